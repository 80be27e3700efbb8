# The SageMaker image: the one driftline binary as training and inference
# container. SageMaker runs `docker run IMAGE train` for a training job and
# `docker run IMAGE serve` for an endpoint; both map to `driftline sagemaker`.
#
#   docker build -t driftline .
#   docker run --rm -v "$PWD/opt-ml:/opt/ml" driftline train
#   docker run --rm -p 8080:8080 -v "$PWD/opt-ml:/opt/ml" driftline serve
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p driftline --features aws \
 && cp target/release/driftline /usr/local/bin/driftline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/driftline /usr/local/bin/driftline
COPY docker/sagemaker-entrypoint /usr/local/bin/sagemaker-entrypoint
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sagemaker-entrypoint"]
