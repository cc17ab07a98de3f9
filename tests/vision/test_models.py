import pytest
import torch

from dllab.vision.models import MODELS, count_parameters, create_model

HOMEWORK = [
    ("cnn2023", (1, 28, 28), 4, {"maxpool": True}, 224_892),
    ("cnn2023", (1, 28, 28), 4, {"maxpool": False}, 224_892),
    ("cnn2024", (3, 48, 48), 6, {"bn_gap": False}, 5_340_742),
    ("cnn2024", (3, 48, 48), 6, {"bn_gap": True}, 755_718),
]


@pytest.mark.parametrize("name, shape, classes, opts, expected", HOMEWORK,
                         ids=["2023-maxpool", "2023-strided", "2024-plain", "2024-bngap"])
def test_homework_parameter_counts(name, shape, classes, opts, expected):
    assert count_parameters(create_model(name, shape, classes, **opts)) == expected


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 48, 48)], ids=["28x28x1", "48x48x3"])
def test_every_model_runs_forward_and_backward_on_both_shapes(name, shape):
    for opts in ({"maxpool": False, "bn_gap": True}, {}):
        model = create_model(name, shape, 10, **opts)
        out = model(torch.rand(4, *shape))
        assert out.shape == (4, 10)
        assert torch.allclose(out.exp().sum(-1), torch.ones(4), atol=1e-5)  # log-probabilities
        out[:, 0].sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_strided_variant_has_no_pooling_and_same_feature_size():
    pooled = create_model("cnn2023", (1, 28, 28), 4, maxpool=True)
    strided = create_model("cnn2023", (1, 28, 28), 4, maxpool=False)
    x = torch.rand(2, 1, 28, 28)
    assert pooled.features(x).shape == strided.features(x).shape == (2, 16, 6, 6)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())


def test_unknown_model_name():
    with pytest.raises(KeyError, match="cnn2023"):
        create_model("resnet", (1, 28, 28), 10)
