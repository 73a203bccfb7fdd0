# Tessera: `docker build -t tessera .`; `docker run --rm -v $PWD/examples:/ex tessera simulate --cluster /ex/cluster.yaml --workload /ex/workload.yaml`, or `tessera serve` in a cluster (see manifests/)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY allocator ./allocator
COPY topology ./topology
COPY scheduler ./scheduler
RUN pip install --no-cache-dir . && useradd --uid 65532 --no-create-home tessera
USER 65532
ENTRYPOINT ["tessera"]
EXPOSE 8888 9090
CMD ["--help"]
