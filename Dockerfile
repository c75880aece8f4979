# syntax=docker/dockerfile:1
FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.10-slim-bookworm
COPY --from=build /install /usr/local
RUN useradd --system --uid 65532 --no-create-home exporter
USER 65532
EXPOSE 8437
ENTRYPOINT ["itnio-exporter"]
CMD ["--config.file=/etc/itnio-exporter/config.yaml"]
