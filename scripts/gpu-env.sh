#!/usr/bin/env bash
# Installs (once) what the wgpu provider's tests need on a machine without a GPU: Mesa's
# lavapipe, a Vulkan driver that runs compute shaders on the CPU (slow but exact), and the
# Vulkan loader. Prints the adapter line vulkaninfo reports; fails loudly when none appears.
set -euo pipefail
icd_glob=/usr/share/vulkan/icd.d/lvp_icd.*.json
if ! ls $icd_glob >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "gpu-env: error: mesa-vulkan-drivers and libvulkan1 are missing and this is not root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if ! ls $icd_glob >/dev/null 2>&1; then
  echo "gpu-env: error: lavapipe's ICD file is still missing after installing mesa-vulkan-drivers" >&2
  exit 1
fi
echo "gpu-env: lavapipe ready ($(ls $icd_glob | head -1))"
