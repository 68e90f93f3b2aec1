"""The factorized backbone: the four factorizations, its config checks and its FLOP budget."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fer_hf.models import FACTORIZATIONS, FactorizedConfig, FactorizedModel, build_model
from fer_hf.models.modeling_factorized import InvertedResidual


def mflops(model, channels, size):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, channels, size, size))
    return counter.get_total_flops() / 1e6


def spatial_kernels(model):
    """(kernel shape, groups == channels) of every spatial (non-1x1) conv inside the blocks."""
    found = []
    for module in model.modules():
        if isinstance(module, InvertedResidual):
            for conv in module.spatial.modules():
                if isinstance(conv, nn.Conv2d):
                    found.append((conv.kernel_size, conv.groups == conv.in_channels > 1))
    return found


SMALL = {"hidden_sizes": (16, 32), "depths": (1, 1), "strides": (1, 2), "expand_ratios": (1, 2)}


@pytest.mark.parametrize(
    ("factorization", "kernels"),
    [
        ("none", {((3, 3), False)}),
        ("depthwise", {((3, 3), True)}),
        ("spatial", {((3, 1), False), ((1, 3), False)}),
        ("both", {((3, 1), True), ((1, 3), True)}),
    ],
)
def test_factorization_builds_the_right_convolutions(factorization, kernels):
    config = FactorizedConfig(image_size=32, factorization=factorization, **SMALL)
    model = FactorizedModel(config).eval()
    assert set(spatial_kernels(model)) == kernels
    out = model(torch.randn(2, 1, 32, 32), output_hidden_states=True)
    assert out.pooler_output.shape == (2, 256, 1, 1)
    assert out.last_hidden_state.shape == (2, 256, 8, 8)  # stride 2 (stem) x 2 (stage 2)
    assert [h.shape[1] for h in out.hidden_states] == [16, 16, 32]


def test_ablation_is_the_same_net_with_cheaper_convolutions():
    flops = {}
    for factorization in FACTORIZATIONS:
        model, _ = build_model("factorized", factorization=factorization)
        flops[factorization] = mflops(model.eval(), 1, 48)
        # Same skeleton: same number of blocks and the same widths.
        widths = [
            m.project[0].out_channels for m in model.modules() if isinstance(m, InvertedResidual)
        ]
        assert widths == [16, 32, 32, 64, 64, 128, 128], factorization
    assert flops["none"] > flops["spatial"] > flops["depthwise"] > flops["both"]
    assert flops["none"] > 5 * flops["depthwise"]


def test_default_config_flop_budget():
    ours, _ = build_model("factorized")
    baseline, _ = build_model("baseline", image_size=48)
    ours_mflops = mflops(ours.eval(), 1, 48)
    assert 5 < ours_mflops < 16  # designed for FER2013's 48x48 gray faces
    assert ours_mflops <= mflops(baseline.eval(), 3, 48) / 10
    assert sum(p.numel() for p in ours.parameters()) < 500_000


def test_squeeze_excitation_and_no_head():
    config = FactorizedConfig(image_size=32, se_ratio=0.25, head_channels=0, **SMALL)
    model = FactorizedModel(config).eval()
    assert any(type(m).__name__ == "SqueezeExcitation" for m in model.modules())
    assert config.num_features == 32
    assert model(torch.randn(1, 1, 32, 32)).pooler_output.shape == (1, 32, 1, 1)


def test_residual_blocks_start_as_identity():
    model = FactorizedModel(FactorizedConfig(image_size=32, **SMALL))
    residual = [m for m in model.modules() if isinstance(m, InvertedResidual) and m.use_residual]
    assert residual and all(torch.all(m.project[1].weight == 0) for m in residual)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_channels": 4}, "`num_channels` must be 1 or 3, got 4"),
        ({"factorization": "separable"}, "Unknown `factorization` 'separable'; expected one of"),
        ({"depths": (1, 2)}, "must be non-empty and of equal length"),
        (
            {"strides": (1, 3, 2, 2)},
            r"Every stage stride must be 1 or 2, got `strides`=\(1, 3, 2, 2\)",
        ),
        ({"kernel_size": 4}, "`kernel_size` must be a positive odd int, got 4"),
        ({"se_ratio": 2.0}, r"`se_ratio` must be in \[0, 1\], got 2.0"),
        ({"image_size": 12}, "`image_size` must be at least 16"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FactorizedConfig(**kwargs)


def test_config_round_trip():
    config = FactorizedConfig(factorization="both", kernel_size=5, se_ratio=0.25)
    again = FactorizedConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert (again.factorization, again.kernel_size, again.total_stride) == ("both", 5, 16)
