# pgrelay on Debian 12: build with the same packages scripts/lib.sh installs,
# package it with the install rules (cpack -G DEB, as scripts/test-install
# checks), and install that .deb into a slim image: its Depends bring the
# runtime libraries, its postinst keeps the pgrelay user made here.
#   docker build -t pgrelay .
#   docker run --rm -e DATABASE_URL=postgres://... -v $PWD/my.json:/etc/pgrelay/pgrelay.json:ro pgrelay
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config libpqxx-dev libpq-dev libboost-dev \
      rapidjson-dev libcli11-dev libssl-dev libnats-dev ca-certificates help2man file \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt README.md ./
COPY cmake cmake
COPY include include
COPY migrations migrations
COPY triggers triggers
COPY src src
COPY examples examples
COPY config config
COPY docs docs
COPY packaging packaging
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGRELAY_TESTS=OFF \
 && cmake --build build \
 && cd build && cpack -G DEB

FROM debian:12-slim
COPY --from=build /src/build/packages/pgrelay_*.deb /tmp/
# A fixed uid, so orchestrators can check runAsNonRoot; the package's postinst
# keeps an existing pgrelay user.
RUN useradd --system --no-create-home --home-dir /nonexistent --uid 10001 pgrelay \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      /tmp/pgrelay_*.deb ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* /tmp/pgrelay_*.deb
USER 10001
ENV PGRELAY_CONFIG=/etc/pgrelay/pgrelay.json \
    PGRELAY_LOG_FORMAT=json \
    PGRELAY_ADMIN_LISTEN=0.0.0.0:9187
EXPOSE 9187
# tini forwards SIGTERM to pgrelay and reaps command handlers' children.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/bin/pgrelay"]
CMD ["run"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
