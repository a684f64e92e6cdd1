import pytest
import torch

from dcvq.model import VQModel
from dcvq.quantizers import DualCodebookQuantizer, VectorQuantizer

ARCH = dict(
    ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32, z_channels=32
)


def dual_model() -> VQModel:
    torch.manual_seed(0)
    q = DualCodebookQuantizer(
        16, global_dim=128, local_dim=128, transformer_layers=1, transformer_ff=32
    )
    return VQModel(q, **ARCH)


def test_exact_attributes():
    names = [n for n, _ in dual_model().named_children()]
    assert names == ["encoder", "quant_conv", "quantizer", "post_quant_conv", "decoder"]


@pytest.mark.parametrize("kind", ["vq", "dual"])
def test_encode_decode_round_trip(kind):
    model = dual_model() if kind == "dual" else VQModel(VectorQuantizer(16, 256), **ARCH)
    model.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_q, indices = model.encode(x)
        k = 2 if kind == "dual" else 1
        assert indices.shape == (2, k, 16, 16) and indices.dtype == torch.long
        # Encoding without autograd returns the codes themselves: the indices give back
        # z_q exactly, hence the same decoded image (no fp32 tolerance to argue about).
        codes = model.quantizer.decode_indices(indices)
        assert torch.equal(codes, z_q)
        assert torch.equal(model.decode_indices(indices), model.decode(z_q))
        rec, vq_loss, info = model(x)
    assert rec.shape == x.shape and vq_loss.ndim == 0
    assert torch.equal(info["indices"], indices)
    assert set(info["losses"]) == set(info["counts"]) == set(model.quantizer.codebook_names)


def test_embed_dim_mismatch_is_explained():
    with pytest.raises(ValueError, match="model.embed_dim"):
        VQModel(VectorQuantizer(16, 128), embed_dim=256, **ARCH)


def test_sizes_that_would_come_back_cropped_are_refused():
    """Each stride-2 level drops an odd row: 150x150 would come back as 148x148 from an f4
    model. The model says so and what fits, instead of cropping silently."""
    arch = ARCH | {"ch_mult": (1, 2, 2), "attn_resolutions": ()}  # f4, as the demo's model
    model = VQModel(VectorQuantizer(16, 256), **arch).eval()
    assert model.downsample_factor == 4
    message = (
        "150x148 images: this model downsamples by 4, so height and width must be multiples "
        "of 4 (its output would be 148x148): crop them to 148x148 or pad them to 152x148"
    )
    x = torch.rand(1, 3, 150, 148) * 2 - 1
    with torch.no_grad():
        for call in (model.encode, model):
            with pytest.raises(ValueError) as err:
                call(x)
            assert str(err.value) == message
        rec, _, _ = model(x[:, :, :148])
    assert rec.shape == (1, 3, 148, 148)
