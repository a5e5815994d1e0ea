# Build: a release binary. Runtime: a slim Debian with a non-root user.
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
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin flexhook \
 && mkdir -p /app /data && chown flexhook:flexhook /data
WORKDIR /app
COPY --from=build /src/target/release/flexhook /usr/local/bin/flexhook
COPY config /app/config
ENV FLEXHOOK_ENV=production \
    FLEXHOOK_STORE__URL=sqlite:///data/flexhook.db
USER flexhook
EXPOSE 8080
ENTRYPOINT ["flexhook"]
CMD ["serve"]
