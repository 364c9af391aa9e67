# syntax=docker/dockerfile:1
# One image for every process: `api` (default), `worker` and `simulator` are its commands.
# The full image, not -slim, for its C compiler: the project's wheel carries the per-document
# hot path compiled by mypyc (hatch_build.py). Only the wheels reach the final image.
FROM python:3.11 AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY service ./service
COPY workers ./workers
# Wheels of the project and its runtime dependencies only; the dev extra stays out of the image.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels ocr-relay \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ocr-relay
USER 10001
WORKDIR /tmp
EXPOSE 8000
# No curl in the slim image: health checks use the interpreter that is there anyway, e.g.
# python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready')"
ENTRYPOINT ["ocr-relay"]
CMD ["api", "--host", "0.0.0.0"]
