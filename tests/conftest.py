"""Shared test set-up: offline Hub, no analytics. Fixtures live next to their tests, except
`one_thread`, which the training modules share (`pytestmark = pytest.mark.usefixtures(...)`)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def one_thread():
    """Run the test with torch on one thread (tiny models: threads only add overhead and noise
    beside other jobs), restoring the count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
