# rnnlab's image: the package with its console script, MLflow and optuna-dashboard. The compose
# stack runs the worker, the MLflow server and optuna-dashboard from it.
#
# Which torch it gets is the build argument TORCH_INDEX_URL (set it in .env for compose):
#   (empty, the default)                     torch from PyPI: on Linux x86-64 that is a CUDA
#                                            build with its CUDA libraries, for GPU machines;
#                                            it runs on a CPU too. No CUDA toolkit is needed in
#                                            the image, only the NVIDIA driver and the NVIDIA
#                                            Container Toolkit on the host.
#   https://download.pytorch.org/whl/cu126   one CUDA version's build (match the host driver)
#   https://download.pytorch.org/whl/cpu     CPU-only torch: a much smaller image for laptops
# e.g.  docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t rnnlab .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=
ARG TORCH_SPEC="torch>=2.3,<2.15"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RNNLAB_CACHE_DIR=/cache

# An unprivileged user; /cache (MNIST downloads) and /mlartifacts (the MLflow server's artifact
# store) belong to it, so the named volumes mounted there start out writable.
RUN useradd --create-home --uid 1000 rnnlab \
    && mkdir -p /app /cache /mlartifacts \
    && chown rnnlab:rnnlab /app /cache /mlartifacts
WORKDIR /app

# torch first, in a layer of its own: by far the largest, and it changes least.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"; \
    else \
        pip install "$TORCH_SPEC"; \
    fi

COPY pyproject.toml README.md ./
COPY platform ./platform
RUN pip install ".[dashboard]"
COPY studies ./studies
COPY benchmarks ./benchmarks

USER rnnlab
CMD ["rnnlab", "--help"]
