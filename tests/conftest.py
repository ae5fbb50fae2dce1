import pytest
from toy import train_reversal


@pytest.fixture(scope="session")
def reversal_model():
    """A small model that has learned to reverse sequences (trained once per test session)."""
    model, _ = train_reversal()
    return model
