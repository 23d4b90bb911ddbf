"""Memory and size bounds, measured on a real `dicom-node serve` process: a 4000 x 4000 16-bit
image is received, scored and answered with a Secondary Capture of display size, and the
node's peak resident memory stays under 1 GB."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom_node.testing.peers import storescu
from tests import dicom_fixtures as fx
from tests.nodes import FAST_WORKER, destination, wait_for

pytestmark = pytest.mark.integration

GB = 1 << 30


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc")


def test_a_4000_px_16_bit_image_is_scored_in_bounded_memory(make_node_process, pacs, tmp_path):
    big = fx.large_16bit(tmp_path / "big.dcm")
    study = pydicom.dcmread(big, stop_before_pixels=True).StudyInstanceUID
    node = make_node_process(worker=FAST_WORKER, destinations=destination(pacs.port))
    idle = peak_rss_bytes(node.proc.pid)
    assert storescu(node.port, big).returncode == 0
    assert wait_for(lambda: node.counts("exports").get("sent") == 1, 120), node.log_text()[-2000:]
    peak = peak_rss_bytes(node.proc.pid)
    print(f"node peak RSS: {idle / 2**20:.0f} MiB idle, {peak / 2**20:.0f} MiB after")  # -s
    assert peak < GB
    (sc_path,) = [p for s, kind, p in pacs.received if s == study and "Secondary" in kind]
    sc = pydicom.dcmread(sc_path)
    # The image reduced to 2048 px, below the band with the warning, score and legend.
    assert sc.Columns == 2048 and 2048 < sc.Rows < 2048 * 1.2
    assert sc_path.stat().st_size < 2 * 2**20  # JPEG


def test_a_200_mb_dataset_is_received_in_bounded_memory(make_node_process, tmp_path):
    big = fx.large_16bit(tmp_path / "huge.dcm", side=10_000)  # 200 MB of pixels
    node = make_node_process()  # receiving only: the peak is the SCP's
    idle = peak_rss_bytes(node.proc.pid)
    result = storescu(node.port, big)
    assert result.returncode == 0 and "Success" in result.stderr, result.stderr[-500:]
    peak = peak_rss_bytes(node.proc.pid)
    print(f"node peak RSS: {idle / 2**20:.0f} MiB idle, {peak / 2**20:.0f} MiB after")  # -s
    assert peak < GB
    assert node.status().instances == 1
