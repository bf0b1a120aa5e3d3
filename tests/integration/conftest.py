import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from magpie_stack import Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack():
    if not os.path.exists(os.path.join(os.environ.get("MAGPIE_RUN", ""), "dev.env")):
        pytest.exit("no test stack: run the integration tests through 'scripts/dev test'", returncode=2)
    return Stack()
