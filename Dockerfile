# fishopt image for workers and the dashboard (docker-compose.yml). CPU build of torch: the
# default PyPI wheel would pull several GB of CUDA libraries that a CPU worker never uses.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned CPU build first, in its own layer, so code changes do not re-download it.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY fishopt ./fishopt
COPY studies ./studies
RUN pip install .

RUN useradd --create-home --uid 1000 fishopt \
    && mkdir -p /cache /artifacts /data \
    && chown fishopt /cache /artifacts
USER fishopt

# Each compose service names its own command (fishopt worker / optuna-dashboard).
CMD ["fishopt", "--help"]
