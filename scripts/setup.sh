#!/usr/bin/env bash
# Creates .venv at the repository root with everything the CLI and the tests need.
# torch==2.13.0 is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Debian packages the tests use for real: python3-venv; dicom3tools (dciodvfy, the DICOM validator);
# a single-node Slurm (the cohort job-array recipe); Chromium + Mesa (EGL, software rendering) for
# the browser app's tests; Orthanc with its DICOMweb plugin (the PACS the DICOM node is tested
# against) and openssl (the node's TLS test certificate).
PACKAGES=""
"$PY" -m venv --help >/dev/null 2>&1 || PACKAGES="$PACKAGES python3-venv"
command -v dciodvfy >/dev/null 2>&1 || PACKAGES="$PACKAGES dicom3tools"
command -v slurmctld >/dev/null 2>&1 || PACKAGES="$PACKAGES slurm-wlm munge"
[ -x /usr/bin/chromium ] || PACKAGES="$PACKAGES chromium"
command -v Orthanc >/dev/null 2>&1 || PACKAGES="$PACKAGES orthanc"
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || PACKAGES="$PACKAGES orthanc-dicomweb"
command -v openssl >/dev/null 2>&1 || PACKAGES="$PACKAGES openssl"
dpkg -s libegl-mesa0 libgl1-mesa-dri libegl1 libgl1 >/dev/null 2>&1 || PACKAGES="$PACKAGES libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri"
if [ -n "$PACKAGES" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian packages:$PACKAGES" >&2
        # no service of these packages (orthanc, munge, slurm) is started by the install: the tests start
        # their own on free loopback ports; a temporary policy-rc.d says so where none exists
        made_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null
        if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    else
        echo "setup: NOT INSTALLED (needs root and apt-get):$PACKAGES" >&2
        echo "setup: run as root, or: sudo apt-get install$PACKAGES; the tests that use them fail until then" >&2
    fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# Slicer 5.8 runs Python 3.9: a second, torch-free venv lets the tests import every file and run the
# engine's torch-free tests on 3.9 (PyPI has no CPU-only torch wheel small enough for CI).
PY39=${PYTHON39:-}
for candidate in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python3.9 /usr/bin/python3.9 /usr/local/bin/python3.9; do
    [ -z "$PY39" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1 && PY39=$candidate
done
if [ -n "$PY39" ] && [ -x "$PY39" ]; then
    [ -x .venv39/bin/python ] || "$PY39" -m venv .venv39
    .venv39/bin/python -m pip install -q --upgrade pip
    .venv39/bin/python -m pip install -q numpy scipy SimpleITK "pydicom>=2.4,<3" pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg pillow tqdm pytest slicerio nibabel
else
    echo "setup: no Python 3.9 found (pyenv install 3.9, or set PYTHON39); the Python 3.9 test will fail" >&2
fi
echo "setup: ready (.venv/bin/adiposeseg, .venv/bin/python -m pytest)"
