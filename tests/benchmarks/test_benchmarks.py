"""Every benchmark runs end to end at a tiny size. Nothing here is timed or compared:
the numbers of a tiny run are meaningless; only the plumbing is checked."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import harness, quantizer, run, taming_step, train_step

# taming's LPIPS calls torchvision's vgg16(pretrained=True): deprecation warnings only.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """As ``benchmarks.run`` does by default; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ctx(tmp_path):
    return harness.Context(torch.device("cpu"), "tiny", tmp_path, log=lambda msg: None)


def test_compare_alternates_and_pairs_ratios():
    calls: list[str] = []
    cmp = harness.compare(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        device=torch.device("cpu"),
        warmup=1,
        repeats=4,
    )
    # warm-up a b, then rounds a b / b a / a b / b a
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(cmp.times["a"]) == len(cmp.times["b"]) == 4
    assert cmp.ratio("a", "a") == 1.0
    assert cmp.median("a") > 0 and cmp.iqr("a") >= 0


def test_peak_memory_sees_a_large_allocation():
    peak = harness.peak_memory(lambda: torch.ones(64 * 2**20 // 4).sum(), torch.device("cpu"))
    if peak is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert 48 < peak < 200


def test_machine_info_names_the_hardware():
    info = harness.machine_info(torch.device("cpu"))
    assert info["cpu"] and info["torch"] == torch.__version__ and info["torch_threads"] >= 1


def test_peak_flops_by_card_name_and_precision():
    """MFU's denominator: the table's dense peaks by the name CUDA reports; None (JSON
    null, no MFU) for a CPU or a card not in the table."""
    assert harness.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.5e12
    assert harness.peak_flops("NVIDIA H100 PCIe", "bf16") == 756.5e12  # not the SXM's
    assert harness.peak_flops("NVIDIA H200", "fp32") == 494.5e12
    assert harness.peak_flops("NVIDIA A100-SXM4-80GB", "fp32") == 156e12
    assert harness.peak_flops("NVIDIA GeForce RTX 4090", "bf16") is None
    assert harness.peak_flops(None, "bf16") is None
    extra, note = harness.flop_fields(2e12, 0.5, 8e12)
    assert extra == {"gflop_per_step": 2000.0, "achieved_tflops": 4.0, "mfu": 0.5}
    assert note.endswith("4 TFLOP/s, MFU 50.0%")
    assert harness.flop_fields(2e12, 0.5, None, per="image")[0]["mfu"] is None


def test_distance_formulas_agree():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(300, 16, generator=g), torch.randn(700, 16, generator=g)
    expected = torch.cdist(z, codebook).argmin(1)
    assert torch.equal(quantizer.unchunked_taming(z, codebook), expected)
    assert torch.equal(quantizer.addmm_nearest_code(z, codebook), expected)


def test_quantizer_benchmark(ctx):
    out = quantizer.run(ctx)
    cases = {r["case"] for r in out["rows"]}
    assert set(quantizer.CANDIDATES) <= cases
    assert {"dcvq_nearest_code", "dcvq_nearest_code_2x128", "taming_unchunked"} <= cases
    measured = [r for r in out["rows"] if r["median_ms"] is not None]
    assert measured and all(r["median_ms"] > 0 and r["ratio"] > 0 for r in measured)
    assert all("same indices as taming: True" in r["note"]
               for r in out["rows"] if r["case"] == "dcvq_nearest_code")  # fmt: skip
    (t128,) = [t for t in out["targets"] if "eval" in t["target"] and "t128" in t["target"]]
    assert "the split search alone" in t128["note"]


def test_train_step_benchmark(ctx):
    out = train_step.run(ctx)
    rows = {r["case"]: r for r in out["rows"] if r["median_ms"] is not None}
    assert set(rows) == {"dcvq_vq", "dcvq_t128_s128"}
    assert rows["dcvq_t128_s128"]["vs"] == "dcvq_vq"
    assert rows["dcvq_vq"]["gflop_per_step"] > 0
    assert all(r["achieved_tflops"] > 0 and r["mfu"] is None for r in rows.values())  # CPU
    gpu_rows = [r for r in out["rows"] if r["median_ms"] is None]
    assert gpu_rows and all(r["note"].startswith("not measured") for r in gpu_rows)
    assert out["targets"][0]["met"] is None  # GPU only


def test_fast_path_runs_on_cpu(ctx):
    """bf16 autocast + channels_last (the GPU fast path, minus compilation) at tiny size."""
    setup = train_step.cpu_setup(ctx)
    spec = train_step.Spec("fast", "t128_s128", precision="bf16", channels_last=True)
    trainer = train_step.make_trainer(ctx, spec, setup)
    assert trainer.model.decoder.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    logs = trainer.train_step([train_step.images(setup, ctx.device, channels_last=True)])
    assert math.isfinite(logs["total"]) and "d" in logs


def test_gpu_specs_pair_like_with_like():
    specs = {s.case: s for s in train_step.gpu_specs("all")}
    assert specs["dcvq_t128_s128+compile_model"].baseline == "dcvq_vq+compile_model"
    assert all(s.precision == "bf16" and s.channels_last for s in specs.values())
    assert [s.case for s in train_step.gpu_specs("none")] == ["dcvq_vq", "dcvq_t128_s128"]


def test_taming_step_benchmark_losses_equal(ctx):
    out = taming_step.run(ctx)
    assert out["losses"]["equal"], out["losses"]
    assert set(out["losses"]["taming"]) == set(taming_step.LOSS_KEYS)
    rows = {r["case"]: r for r in out["rows"] if r["median_ms"] is not None}
    assert set(rows) == {"taming_fp32", "dcvq_fp32"}
    assert rows["dcvq_fp32"]["vs"] == "taming_fp32"
    # one FLOP count (dcvq's step) for every case, taming's included
    assert rows["taming_fp32"]["gflop_per_step"] == rows["dcvq_fp32"]["gflop_per_step"] > 0
    assert out["targets"][0]["met"] is True


def test_evaluation_benchmark(ctx):
    from benchmarks import evaluation

    out = evaluation.run(ctx)
    sized = [r for r in out["rows"] if r["note"].startswith("one")]
    assert [r["config"].split(" ")[0] for r in sized] == ["16", "32", "64"]
    assert all(r["throughput"] > 0 for r in sized)
    measured = [r for r in out["rows"] if r["median_ms"] is not None]
    assert all(r["gflop_per_image"] > 0 and r["mfu"] is None for r in measured)


def test_cli_runs_each_benchmark_in_its_own_process(tmp_path):
    results = run.main(["--tiny", "--only", "evaluation", "--only", "quantizer", "--out",
                        str(tmp_path), "--name", "both"])  # fmt: skip
    assert list(results["benchmarks"]) == ["quantizer", "evaluation"]  # canonical order
    assert results["options"]["process_per_benchmark"] is True
    assert (tmp_path / "both.json").is_file() and (tmp_path / "both.md").is_file()


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    results = run.main(["--tiny", "--only", "quantizer", "--out", str(tmp_path)])
    assert set(results["benchmarks"]) == {"quantizer"}
    data = json.loads((tmp_path / "tiny-quantizer.json").read_text())
    assert data["machine"]["torch"] == torch.__version__
    assert data["machine"]["torch_threads"] == 1
    md = (tmp_path / "tiny-quantizer.md").read_text()
    assert "## quantizer" in md and "## Targets" in md and "| dcvq_vq |" in md
    assert md in capsys.readouterr().out


def test_paper_f16_is_taming_f16():
    assert harness.paper_f16() == dict(
        ch=128,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        attn_resolutions=(16,),
        resolution=256,
        z_channels=256,
    )
