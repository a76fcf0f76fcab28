# syntax=docker/dockerfile:1
#
# uploadgate: a static binary on a distroless base, run as a non-root user.
#
#   docker build -t uploadgate --build-arg VERSION="$(git describe --tags --always)" .
#   docker run -p 8080:8080 -v uploadgate-data:/data uploadgate
#
# docs/operations.md explains the image; deploy/deploy_test.go runs the RUN
# steps of the build stage as plain commands, so keep them plain shell.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: a change to the code does not download them again.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.mod,target=go.mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bin/uploadgate ./cmd/uploadgate
# The HEALTHCHECK below: the final image has no shell and no curl.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/bin/uploadgate-healthcheck ./deploy/healthcheck
# The data directory, private to the user the gateway runs as. A named volume
# mounted at /data starts with this owner and mode.
RUN mkdir -p -m 0700 /out/data

# CA certificates (for S3 and Redis over TLS), /etc/passwd with the user
# nonroot (65532), tzdata; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="uploadgate" \
      org.opencontainers.image.description="Resumable upload gateway for XMPP (XEP-0363) and tus clients" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    UPLOADGATE_LISTEN=:8080 \
    UPLOADGATE_DATA_DIR=/data
# Uploads on disk storage, S3 parts in transit, the session database (without
# --redis-url) and the keys secret.key and id.key: back it up, keep id.key.
VOLUME ["/data"]
EXPOSE 8080
# GET /healthz at UPLOADGATE_LISTEN. Kubernetes ignores this and uses the
# probes of deploy/kubernetes/deployment.yaml.
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
    CMD ["uploadgate-healthcheck"]
ENTRYPOINT ["uploadgate", "serve"]
