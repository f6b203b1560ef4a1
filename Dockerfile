# ternd on Debian 12 with the CUDA 13 runtime copied from a CUDA image.
#   docker build -t tern .
#   docker run --gpus all -p 50051:50051 -p 8000:8000 tern --model /models/my-model
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04 AS cuda

FROM debian:12 AS build
COPY --from=cuda /usr/local/cuda /usr/local/cuda
WORKDIR /src
COPY . .
RUN tools/dev/install_deps.sh && \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_BUILD_TESTS=OFF \
      -DTERN_CUDA_ARCHITECTURES="80;90a" && \
    cmake --build build -j"$(nproc)"

FROM debian:12
RUN apt-get update && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libspdlog1.10 libopenblas0 ca-certificates && \
    apt-get install -y --no-install-recommends \
      $(apt-cache depends prometheus-cpp-dev | awk '/Depends: libprometheus/{print $2}') && \
    rm -rf /var/lib/apt/lists/*
COPY --from=cuda /usr/local/cuda/lib64/libcudart.so.13* /usr/local/cuda/lib64/libcublas*.so.13* /usr/local/lib/
COPY --from=build /src/build/bin/ternd /src/build/bin/tern /usr/local/bin/
RUN ldconfig
EXPOSE 50051 8000
HEALTHCHECK CMD ["tern", "health"]
ENTRYPOINT ["ternd"]
