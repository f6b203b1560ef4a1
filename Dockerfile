# ternd and tern on Debian 12, built from Debian packages (no registry pulls by default).
#
#   tools/container/make_base_image.sh        # localhost/tern-base:bookworm, made by debootstrap
#   buildah build --format docker --layers -t tern .
#   buildah build --format docker --layers -t tern-cuda --build-arg TERN_CUDA=ON \
#     --build-arg CUDA_IMAGE=nvidia/cuda:13.0.0-devel-ubuntu24.04 .
#
# docker build takes the same arguments (BASE_IMAGE=debian:12 where a registry is at hand).
# --format docker keeps the HEALTHCHECK (the OCI image format has none). Run it with the models
# mounted read-only at /models:
#
#   docker run --gpus all -p 50051:50051 -p 8000:8000 -v /srv/models:/models:ro tern-cuda \
#     --model /models/my-model
#
# tools/container/build_and_smoke.sh builds it and serves the demo model from it.

# The Debian 12 image every stage starts from.
ARG BASE_IMAGE=localhost/tern-base:bookworm
# With TERN_CUDA=ON the build stage takes the CUDA toolkit from this image's /usr/local/cuda
# (e.g. nvidia/cuda:13.0.0-devel-ubuntu24.04) and the final stage the CUDA runtime libraries
# ternd links. A CPU-only build (TERN_CUDA=OFF) reads nothing from it, so it defaults to the base.
ARG CUDA_IMAGE=localhost/tern-base:bookworm

FROM ${CUDA_IMAGE} AS cuda
RUN mkdir -p /usr/local/cuda

FROM ${BASE_IMAGE} AS build
COPY tools/dev/install_deps.sh /src/tools/dev/install_deps.sh
RUN /src/tools/dev/install_deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY --from=cuda /usr/local/cuda /usr/local/cuda
WORKDIR /src
COPY . .
# Declared after the layers above, so that a new commit or job count reuses them.
# OFF: the CPU backend only. ON: also the CUDA backend for TERN_CUDA_ARCHITECTURES.
ARG TERN_CUDA=OFF
ARG TERN_CUDA_ARCHITECTURES=80;90a
# Parallel compile jobs (empty: all cores).
ARG JOBS=
# The commit `ternd --version` reports (the build context has no .git).
ARG TERN_GIT_SHA=unknown
# ccache keeps its objects in a build cache, so a rebuild after a small change is quick.
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_BUILD_TESTS=OFF \
      -DTERN_CUDA="${TERN_CUDA}" -DTERN_CUDA_ARCHITECTURES="${TERN_CUDA_ARCHITECTURES}" \
      -DTERN_GIT_SHA="${TERN_GIT_SHA}" && \
    cmake --build /build -j"${JOBS:-$(nproc)}" --target ternd tern && \
    tools/container/stage_runtime.sh /opt/tern /build/bin/ternd /build/bin/tern

FROM ${BASE_IMAGE}
COPY --from=build /opt/tern /opt/tern
# Only the packages that own the executables' libraries (written by stage_runtime.sh), and
# tern's own user: ternd needs no root and no writable file outside its home.
RUN apt-get update && \
    apt-get install -y --no-install-recommends $(cat /opt/tern/runtime-packages) && \
    rm -rf /var/lib/apt/lists/* && \
    echo /opt/tern/lib >/etc/ld.so.conf.d/tern.conf && ldconfig && \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/tern --create-home \
      --shell /usr/sbin/nologin tern
ENV PATH=/opt/tern/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 10001:10001
WORKDIR /var/lib/tern
VOLUME /models
EXPOSE 50051 8000
# grpc.health.v1 on the gRPC port (tern health exits 0 only when SERVING). Models take a while
# to load, hence the start period. TERN_TARGET points it at another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
  CMD ["tern", "--timeout", "3", "health"]
ENTRYPOINT ["ternd"]
