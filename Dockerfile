# Build: a release binary. Runtime: a slim Debian; flexhook runs as the non-root user
# `flexhook`, dropped to by deploy/entrypoint.sh.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY migrations migrations
COPY config config
RUN cargo build --release --locked --bin flexhook

FROM debian:bookworm-slim
# TLS roots are compiled in (webpki-roots): no ca-certificates or OpenSSL needed.
# setpriv, which the entrypoint uses, ships in util-linux, part of every Debian image.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin flexhook \
 && mkdir -p /app /data && chown flexhook:flexhook /data
WORKDIR /app
COPY --from=build /src/target/release/flexhook /usr/local/bin/flexhook
COPY deploy/entrypoint.sh /usr/local/bin/flexhook-entrypoint
COPY config /app/config
# The store is config/production.toml's (SQLite on /data) unless DATABASE_URL says otherwise.
# The config folder is absolute, so that a command run from any folder (`fly ssh console -C`
# starts in /, not in WORKDIR) reads production.toml: production refuses to run without it.
ENV FLEXHOOK_ENV=production \
    FLEXHOOK_CONFIG_DIR=/app/config \
    FLEXHOOK_RUN_AS=flexhook
# No USER line: the container starts as root so that the entrypoint can hand a freshly
# mounted, root-owned volume to `flexhook`; it then drops to that user before flexhook runs.
EXPOSE 8080
ENTRYPOINT ["flexhook-entrypoint"]
CMD ["serve"]
