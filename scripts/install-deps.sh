#!/usr/bin/env bash
# Installs what `make test` / `make demo` need and is missing: a C++20 compiler, CMake >= 3.25,
# ninja, GoogleTest, and the Python build and test packages. Idempotent and quiet when all is
# there. Uses apt-get (Debian/Ubuntu) and pip only.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v g++ >/dev/null || need_apt+=(g++)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

py=${PYTHON:-python3}
need_pip=()
for mod in nanobind:nanobind scikit_build_core:scikit-build-core numpy:numpy pytest:pytest \
           matplotlib:matplotlib; do
  $py -c "import ${mod%%:*}" 2>/dev/null || need_pip+=("${mod##*:}")
done
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "install-deps: pip install ${need_pip[*]}"
  $py -m pip install -q "${need_pip[@]}"
fi
