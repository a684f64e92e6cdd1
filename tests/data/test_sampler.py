import itertools

from dcvq.data import StepSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_resume_continues_the_same_stream():
    full = take(StepSampler(10, batch_size=3, seed=1), 3 * 7)
    resumed = take(StepSampler(10, batch_size=3, seed=1, start_step=4), 3 * 3)
    assert resumed == full[12:]


def test_epochs_are_permutations():
    stream = [i for i, _ in take(StepSampler(10, batch_size=5, seed=0), 20)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]


def test_ranks_split_the_global_batch():
    """W ranks x batch b see exactly what one process with batch W*b sees, seeds included."""
    single = take(StepSampler(17, batch_size=4, seed=3), 4 * 5)
    r0 = take(StepSampler(17, batch_size=2, seed=3, rank=0, world_size=2), 2 * 5)
    r1 = take(StepSampler(17, batch_size=2, seed=3, rank=1, world_size=2), 2 * 5)
    merged = [x for s in range(5) for x in r0[2 * s : 2 * s + 2] + r1[2 * s : 2 * s + 2]]
    assert merged == single
