# inspekt container recipe: the REST API (`--target api`, the default) and the workbench (`--target app`).
#
#   docker build -t inspekt-api .                       # REST API
#   docker build -t inspekt-app --target app .          # Streamlit workbench
#   docker run -p 8000:8000 -v /srv/models:/models:ro inspekt-api serve /models/model.inspekt --host 0.0.0.0
#
# A recipe: it is not built on the project's development machines (no Docker there). See
# docs/deployment.md for the reverse proxy, HTTPS, where data is stored and privacy.

ARG PYTHON=3.11

# --- build: a virtual environment with CPU-only torch --------------------------------------------
FROM python:${PYTHON}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# constraints.txt pins torch and torchvision together; the CPU index serves the CPU builds
# (PyPI's default torch wheel carries gigabytes of CUDA libraries). The serve extra's uvicorn[standard] adds the
# compiled HTTP parser and event loop (httptools, uvloop), which uvicorn picks up by itself.
RUN python -m venv /opt/inspekt \
 && /opt/inspekt/bin/pip install --upgrade pip \
 && /opt/inspekt/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt ".[serve,app,dist,postgres]"

# --- runtime: the environment, a non-root user, no compilers ---------------------------------------
FROM python:${PYTHON}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin inspekt \
 && mkdir -p /data /models && chown inspekt:inspekt /data
COPY --from=build /opt/inspekt /opt/inspekt
ENV PATH=/opt/inspekt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    INSPEKT_WORKSPACE=/data/workspace
USER inspekt
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["inspekt"]

# --- the workbench -------------------------------------------------------------------------------
FROM runtime AS app
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["app", "--host", "0.0.0.0", "--port", "8501", "--workspace", "/data/workspace"]

# --- the REST API (last stage: the default target) -------------------------------------------------
FROM runtime AS api
EXPOSE 8000
# /healthz answers once the process is up; models load before the port opens, so a passing check
# means the models are loaded too (an orchestrator can also probe /readyz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["serve", "/models/model.inspekt", "--host", "0.0.0.0", "--port", "8000"]
