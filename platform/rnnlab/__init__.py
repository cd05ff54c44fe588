"""rnnlab: hyperparameter experiments for recurrent networks on sequential MNIST."""

__version__ = "0.1.0"

from rnnlab.errors import RnnlabError  # noqa: E402
from rnnlab.spec import RunConfig, load_config  # noqa: E402

__all__ = ["RnnlabError", "RunConfig", "__version__", "load_config"]
