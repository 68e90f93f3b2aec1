"""The task model over each backbone: outputs, losses, gradients, input checks (tiny configs)."""

import math

import pytest
import torch
from transformers import ViTConfig

from fer_hf.labels import class_names
from fer_hf.models import (
    MODEL_KINDS,
    FerConfig,
    build_model,
    default_backbone_config,
    tiny_config,
)
from fer_hf.models.modeling_fer import masked_ccc_loss, masked_l1_loss

SIZE = 32


def tiny_model(kind, **kwargs):
    torch.manual_seed(0)
    model, _ = build_model(kind, image_size=SIZE, backbone_config=tiny_config(kind), **kwargs)
    return model


def pixels(model, batch=3):
    return torch.randn(batch, model.config.num_channels, SIZE, SIZE)


def test_every_kind_has_a_tiny_config():
    for kind in MODEL_KINDS:
        config = tiny_config(kind)
        widths = getattr(config, "hidden_sizes", None) or [config.hidden_size]
        assert max(widths) <= 16, kind
        model = tiny_model(kind)
        assert sum(p.numel() for p in model.parameters()) < 100_000, kind


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("num_classes", [7, 8])
def test_logits_shape_and_label_names(kind, num_classes):
    model = tiny_model(kind, num_classes=num_classes).eval()
    out = model(pixels(model))
    assert out.logits.shape == (3, num_classes)
    assert out.valence_arousal is None and out.hidden_states is None
    assert list(model.config.id2label.values()) == list(class_names(num_classes))
    assert model.config.label2id["happy"] == 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_loss_exactly_when_labels_given(kind):
    model = tiny_model(kind, valence_arousal=True)
    x = pixels(model)
    va = torch.tensor([0.1, -0.5, 0.9])
    assert model(x).loss is None
    assert model(x, valence=va, arousal=va).loss is None
    out = model(x, labels=torch.tensor([0, 1, 6]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.valence_arousal.shape == (3, 2)
    assert out.valence_arousal.abs().max() <= 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_parameter_gets_a_finite_gradient(kind):
    model = tiny_model(kind, valence_arousal=True).train()
    x = pixels(model, batch=4)
    out = model(
        x,
        labels=torch.tensor([0, 1, 2, 3]),
        valence=torch.tensor([0.5, float("nan"), -0.2, 0.1]),
        arousal=torch.tensor([float("nan"), float("nan"), 0.3, 0.0]),
    )
    out.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.valence_arousal.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_hidden_states(kind):
    model = tiny_model(kind).eval()
    out = model(pixels(model), output_hidden_states=True)
    assert len(out.hidden_states) == 3  # embeddings/stem + 2 stages or layers


def test_nan_valence_arousal_rows_contribute_nothing():
    model = tiny_model("factorized", valence_arousal=True).eval()
    x, labels = pixels(model), torch.tensor([0, 1, 2])
    valence = torch.tensor([0.3, float("nan"), -0.4])
    arousal = torch.tensor([0.1, float("nan"), 0.2])
    with torch.no_grad():
        full = model(x, labels=labels, valence=valence, arousal=arousal)
        ce = model(x, labels=labels).loss
    prediction = full.valence_arousal
    target = torch.stack([valence, arousal], dim=1)
    expected = (prediction[[0, 2]] - target[[0, 2]]).abs().mean()
    assert torch.allclose(full.loss, ce + expected, atol=1e-6)
    # Changing the prediction of a NaN row must not change the loss.
    p2 = prediction.clone()
    p2[1] = 0.99
    assert torch.allclose(masked_l1_loss(prediction, target), masked_l1_loss(p2, target))
    # All unknown: the loss is exactly the cross-entropy.
    nan = torch.full((3,), float("nan"))
    with torch.no_grad():
        assert torch.allclose(model(x, labels=labels, valence=nan, arousal=nan).loss, ce)


def test_va_loss_weight_and_missing_arousal():
    model = tiny_model("factorized", valence_arousal=True, va_loss_weight=0.0).eval()
    x, labels = pixels(model), torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.allclose(
            model(x, labels=labels, valence=torch.tensor([0.5, 0.5, 0.5])).loss,
            model(x, labels=labels).loss,
        )


def test_ccc_loss():
    torch.manual_seed(0)
    target = torch.rand(16, 2) * 2 - 1
    assert masked_ccc_loss(target.clone(), target) < 1e-6  # perfect agreement
    centred = target - target.mean(dim=0)
    assert abs(masked_ccc_loss(-centred, centred) - 2) < 1e-4  # perfect disagreement
    prediction = torch.rand(16, 2)
    expected = []  # Lin's CCC with population (co)variances, column by column
    for p, t in zip(prediction.T, target.T, strict=True):
        covariance = ((p - p.mean()) * (t - t.mean())).mean()
        ccc = (
            2
            * covariance
            / (p.var(unbiased=False) + t.var(unbiased=False) + (p.mean() - t.mean()) ** 2)
        )
        expected.append(1 - ccc)
    assert torch.allclose(
        masked_ccc_loss(prediction, target), torch.stack(expected).mean(), atol=1e-6
    )
    # NaN rows are ignored: same value as computing on the valid rows only.
    with_nan = target.clone()
    with_nan[3] = float("nan")
    prediction = torch.rand(16, 2)
    keep = [i for i in range(16) if i != 3]
    assert torch.allclose(
        masked_ccc_loss(prediction, with_nan), masked_ccc_loss(prediction[keep], target[keep])
    )
    # A column with fewer than two valid rows contributes nothing.
    sparse = torch.full((4, 2), float("nan"))
    sparse[:, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    sparse[0, 1] = 0.5
    prediction = torch.rand(4, 2, requires_grad=True)
    loss = masked_ccc_loss(prediction, sparse)
    assert torch.allclose(loss, masked_ccc_loss(prediction[:, :1], sparse[:, :1]))
    loss.backward()
    assert torch.isfinite(prediction.grad).all()
    assert masked_ccc_loss(prediction, torch.full((4, 2), float("nan"))) == 0


def test_ccc_option_is_used():
    model = tiny_model("factorized", valence_arousal=True, va_loss="ccc").eval()
    x, labels = pixels(model, batch=4), torch.tensor([0, 1, 2, 3])
    valence = torch.tensor([0.3, -0.1, -0.4, 0.8])
    with torch.no_grad():
        out = model(x, labels=labels, valence=valence, arousal=valence)
        ce = model(x, labels=labels).loss
        target = torch.stack([valence, valence], dim=1)
    assert torch.allclose(out.loss, ce + masked_ccc_loss(out.valence_arousal, target), atol=1e-6)


def test_class_weights_and_label_smoothing():
    weights = [1.0, 2.0, 1.0, 1.0, 1.0, 5.0, 1.0]
    model = tiny_model("factorized", class_weights=weights, label_smoothing=0.1).eval()
    x, labels = pixels(model), torch.tensor([0, 5, 1])
    with torch.no_grad():
        out = model(x, labels=labels)
    expected = torch.nn.functional.cross_entropy(
        out.logits, labels, weight=torch.tensor(weights), label_smoothing=0.1
    )
    assert torch.allclose(out.loss, expected)
    with pytest.raises(ValueError, match="`class_weights` has 3 entries but the model has 7"):
        tiny_model("factorized", class_weights=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_wrong_channel_count_is_rejected(kind):
    model = tiny_model(kind).eval()
    wrong = 3 if model.config.num_channels == 1 else 1
    with pytest.raises(ValueError, match=f"has {wrong} channels but this model takes"):
        model(torch.randn(1, wrong, SIZE, SIZE))
    with pytest.raises(ValueError, match="has 4 channels"):
        model(torch.randn(1, 4, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"shape \(batch, channels, height, width\)"):
        model(torch.randn(model.config.num_channels, SIZE, SIZE))


def test_image_size_checks():
    vit = tiny_model("vit").eval()
    with pytest.raises(ValueError, match="are 40x40 but this ViT takes 32x32 only"):
        vit(torch.randn(1, 3, 40, 40))
    cnn = tiny_model("factorized").eval()
    assert cnn(torch.randn(1, 1, 40, 40)).logits.shape == (1, 7)  # CNNs take any size >= min
    with pytest.raises(ValueError, match="needs at least 4 px per side"):
        cnn(torch.randn(1, 1, 2, 2))
    with pytest.raises(
        ValueError,
        match=r"`image_size` must be at least 16 \(the network.s total stride\) for this config",
    ):
        build_model("factorized", image_size=8)
    with pytest.raises(ValueError, match="needs an `image_size` divisible by 8"):
        build_model("vit", image_size=50)


def test_config_errors():
    with pytest.raises(ValueError, match="Unknown backbone model_type 'convnext'"):
        FerConfig(backbone_config={"model_type": "convnext"})
    with pytest.raises(TypeError, match="must be a PretrainedConfig or a dict, got str"):
        FerConfig(backbone_config="resnet")
    with pytest.raises(ValueError, match="`image_size`=36 is not a multiple of the ViT's patch"):
        FerConfig(backbone_config=ViTConfig(image_size=36, patch_size=8))
    with pytest.raises(ValueError, match="`image_size`=64 differs from the ViT backbone's 32"):
        FerConfig(backbone_config=tiny_config("vit"), image_size=64)
    with pytest.raises(ValueError, match="`num_channels`=1 differs from the backbone's 3"):
        FerConfig(backbone_config=tiny_config("baseline"), num_channels=1)
    with pytest.raises(ValueError, match="Unknown `va_loss` 'mse'"):
        FerConfig(va_loss="mse")
    with pytest.raises(ValueError, match="Unknown model kind 'resnet'"):
        build_model("resnet")
    with pytest.raises(ValueError, match="`num_classes` must be one of"):
        build_model("factorized", num_classes=6)
    with pytest.raises(ValueError, match="Unknown config override 'widths'"):
        build_model("factorized", widths=(8, 16))
    with pytest.raises(ValueError, match="A 1-channel model takes grayscale images only"):
        build_model("factorized", num_channels=1, grayscale=False)
    with pytest.raises(ValueError, match="Unknown baseline variant 'resnet34'"):
        build_model("baseline", variant="resnet34")


def test_build_model_defaults():
    model, processor = build_model("factorized")
    assert model.config.image_size == 48 and model.config.num_channels == 1
    assert processor.do_grayscale and processor.size == {"height": 48, "width": 48}
    assert model.config.backbone_config.factorization == "depthwise"
    colour, colour_processor = build_model("factorized", grayscale=False, image_size=64)
    assert colour.config.num_channels == 3 and not colour_processor.do_grayscale
    gray_resnet, gray_processor = build_model(
        "baseline", image_size=SIZE, grayscale=True, backbone_config=tiny_config("baseline")
    )
    # Gray data on a 3-channel backbone: the processor makes gray images and repeats them.
    assert gray_resnet.config.num_channels == 3 and gray_processor.do_grayscale
    resnet50 = default_backbone_config("baseline", 64, num_channels=3, variant="resnet50")
    assert resnet50.layer_type == "bottleneck" and resnet50.depths == [3, 4, 6, 3]
    vit_base = default_backbone_config("vit", 224, num_channels=3)
    assert (vit_base.hidden_size, vit_base.patch_size) == (768, 16)
    assert math.isclose(model.config.dropout, 0.2)
