# pgrelay on Debian 12: build with the same packages scripts/lib.sh installs,
# run from a slim image with only the shared libraries.
#   docker build -t pgrelay .
#   docker run --rm -e DATABASE_URL=postgres://... -v $PWD/my.json:/etc/pgrelay/pgrelay.json:ro pgrelay
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config libpqxx-dev libpq-dev libboost-dev \
      rapidjson-dev libcli11-dev libssl-dev libnats-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY migrations migrations
COPY triggers triggers
COPY src src
COPY examples examples
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGRELAY_TESTS=OFF \
 && cmake --build build --target pgrelay_cli \
 && strip --strip-debug build/pgrelay

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpqxx-6.4 libpq5 libssl3 libnats3.4 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --uid 10001 pgrelay
COPY --from=build /src/build/pgrelay /usr/local/bin/pgrelay
COPY config/pgrelay.example.json /etc/pgrelay/pgrelay.example.json
USER 10001
ENV PGRELAY_CONFIG=/etc/pgrelay/pgrelay.json \
    PGRELAY_LOG_FORMAT=json \
    PGRELAY_ADMIN_LISTEN=0.0.0.0:9187
EXPOSE 9187
# tini forwards SIGTERM to pgrelay and reaps command handlers' children.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/pgrelay"]
CMD ["run"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
