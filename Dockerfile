# ringcast: multi-stage build, small runtime image, non-root user.
#
#   docker build -t ringcast .
#   docker run --rm --network host ringcast
#   docker run --rm -p 8080:8080 -p 50000-50001:50000-50001/udp \
#       -e RINGCAST_MEDIA_SHARDS=2 -e RINGCAST_MEDIA_ANNOUNCE=<host address> ringcast
#
# Configuration: the compiled-in defaults, then /etc/ringcast/ringcast.toml (mount your own
# over it), then RINGCAST_<SECTION>_<KEY> variables. It runs with the epoll engine under
# Docker's default seccomp profile (which forbids io_uring).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# jemalloc (the server's allocator) is built from C with make.
RUN apt-get update && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p ringcast \
    && cp target/release/ringcast /ringcast \
    && strip /ringcast

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ringcast
COPY --from=build /ringcast /usr/local/bin/ringcast
COPY config/ringcast.toml /etc/ringcast/ringcast.toml
USER 10001
# HTTP (WHIP/WHEP, demo pages, /metrics) and the shards' UDP ports (one per shard from 50000).
EXPOSE 8080/tcp 50000-50063/udp
ENTRYPOINT ["/usr/local/bin/ringcast"]
CMD ["--config", "/etc/ringcast/ringcast.toml"]
