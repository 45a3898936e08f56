# Latch in one image: the coordinator by default, the node agent on demand.
#
#   docker build --build-arg VERSION="$(git describe --tags --always)" -t latch .
#   docker run -d -p 7443:7443 -v latch-coordinator:/var/lib/latch-coordinator latch \
#     coordinator --listen 0.0.0.0:7443 --data-dir /var/lib/latch-coordinator \
#     --dist-dir /usr/local/share/latch/dist --public-url https://COORD:7443
#   docker run -d --user 0 --network host --cap-add NET_ADMIN --cap-add BPF \
#     --cap-add PERFMON --device /dev/net/tun -v latch-node:/var/lib/latch latch \
#     node --coordinator https://COORD:7443 --join-token TOKEN
#
# The build stage builds through scripts/dist.sh (which runs
# scripts/build.sh for each platform), the same commands `make build` and
# `make dist` run, so CI builds the binary this image ships the same way.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static binaries (CGO_ENABLED=0) for linux/amd64, linux/arm64 and
# darwin/arm64 with SHA256SUMS: the coordinator serves them to the install
# script. The image's own binary is the one for its architecture.
RUN VERSION="$VERSION" ./scripts/dist.sh /dist \
	&& cp "/dist/latch-linux-$(go env GOARCH)" /latch

FROM debian:bookworm-slim
# iproute2 for the node (ip), ca-certificates for HTTPS clients. Debian's
# security updates are wanted, so versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
	&& apt-get install -y --no-install-recommends iproute2 ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin latch \
	&& install -d -o latch -g latch -m 0700 /var/lib/latch-coordinator
COPY --from=build /latch /usr/local/bin/latch
COPY --from=build /dist /usr/local/share/latch/dist
# The coordinator needs no privilege. The node needs root with NET_ADMIN,
# BPF and PERFMON and /dev/net/tun: run it with --user 0 (see above).
USER latch
EXPOSE 7443
VOLUME ["/var/lib/latch-coordinator"]
ENTRYPOINT ["/usr/local/bin/latch"]
CMD ["coordinator", "--listen", "0.0.0.0:7443", "--data-dir", "/var/lib/latch-coordinator", "--dist-dir", "/usr/local/share/latch/dist"]
