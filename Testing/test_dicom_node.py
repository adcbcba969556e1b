"""The DICOM node (issue 25) end to end against a real Orthanc: CT pushed by Orthanc or pulled from
it, measured by `adiposeseg node` in its own process, SEG + SR stored back under the same study
and read back by QIDO/WADO and highdicom with `segment`'s numbers; killed and restarted nodes
process a series once; unknown callers, full queues and failing destinations are refused or
reported; every CT transfer syntax is read; TLS."""
import csv
import io
import json
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import (CTImageStorage, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, RLELossless)

from AdiposeSegLib.errors import AdiposeSegError
from AdiposeSegLib.node.config import build_config, parse_peer, read_config_file
from AdiposeSegLib.reporting.aggregate import summary_csv_text
from AdiposeSegLib.running.cli import main
from node_helpers import free_port, node_process, orthanc_server, store_files

hd = pytest.importorskip("highdicom")
PHI = ("Doe^John", "PID12345")
VOLUME = "118565006"


def _copy(source: Path, out: Path, study: str, series: str, accession: str) -> Path:
    """The shared series with UIDs restored (as issue 21's de-identified copies) and patient data set."""
    out.mkdir(parents=True)
    for index, path in enumerate(sorted(p for p in source.iterdir() if p.is_file())):
        ds = pydicom.dcmread(str(path))
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = f"{series}.{index + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.AccessionNumber = study, series, accession
        ds.PatientName, ds.PatientID = PHI
        ds.save_as(str(out / f"im{index:03d}.dcm"))
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory, dicom_j2k, default_model):
    """A running Orthanc and a running node that Orthanc knows and the node sends back to; the
    reference numbers of `adiposeseg segment` on the same series."""
    root = tmp_path_factory.mktemp("site")
    reference_series = _copy(dicom_j2k, root / "reference", "2.25.7000", "2.25.7000.1", "REF")
    code = main(["segment", str(reference_series), "-o", str(root / "segment"), "--device", "cpu", "-q", "--case-id", "ref"])
    assert code == 0
    reference = json.loads((root / "segment" / "ref_summary.json").read_text())
    node_port = free_port()
    with orthanc_server(root, {"adiposeseg": ["ADIPOSESEG", "127.0.0.1", node_port]}) as orthanc:
        with node_process(root / "node", node_port, "--allow", "ORTHANC,TESTSCU", "--quiet-seconds", "1",
                          "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}") as node:
            yield {"root": root, "orthanc": orthanc, "node": node, "reference": reference, "source": dicom_j2k}


def _results_in_orthanc(orthanc, study_uid: str, timeout: float = 120) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        found = {s["MainDicomTags"].get("Modality"): s for s in orthanc.study_series(study_uid)}
        if "SEG" in found and "SR" in found:
            return found
        time.sleep(0.1)
    try:   # what Orthanc's jobs say (a routing job that failed names its error), to diagnose a rare miss
        jobs = [(j.get("Type"), j.get("State"), j.get("ErrorDescription"), j.get("ErrorDetails"))
                for j in json.loads(orthanc.request("/jobs?expand"))]
    except Exception as exc:  # noqa: BLE001 - only a diagnostic
        jobs = f"(jobs not read: {exc})"
    raise AssertionError(f"no SEG + SR in Orthanc for study {study_uid}; Orthanc's jobs: {jobs}")


def _volumes(sr) -> dict:
    return {g.tracking_identifier.split()[0]: next(m.value for m in g.get_measurements() if m.name.value == VOLUME)
            for g in sr.content.get_volumetric_roi_measurement_groups() if "volume" in g.tracking_identifier}


def _check_objects(orthanc, study_uid: str, series_uid: str, reference: dict, ct_in_pacs: bool = True):
    """QIDO finds CT, SEG and SR under the study; WADO gives the SEG and SR, which highdicom reads:
    the SEG refers to every CT image, the SR holds `segment`'s volumes and is marked preliminary."""
    qido = json.loads(orthanc.request(f"/dicom-web/studies/{study_uid}/series", accept="application/dicom+json"))
    modalities = sorted(item["00080060"]["Value"][0] for item in qido)
    assert modalities == (["CT"] if ct_in_pacs else []) + ["SEG", "SR"]
    objects = {}
    for item in qido:
        modality, uid = item["00080060"]["Value"][0], item["0020000E"]["Value"][0]
        if modality == "CT":
            continue
        instances = json.loads(orthanc.request(f"/dicom-web/studies/{study_uid}/series/{uid}/instances",
                                               accept="application/dicom+json"))
        assert len(instances) == 1, f"{len(instances)} {modality} objects: a series was sent twice"
        sop = instances[0]["00080018"]["Value"][0]
        objects[modality] = pydicom.dcmread(io.BytesIO(orthanc.wado(study_uid, uid, sop)))
    seg = hd.seg.Segmentation.from_dataset(objects["SEG"])
    assert seg.StudyInstanceUID == study_uid
    assert {uid for _, _, uid in seg.get_source_image_uids()} == {f"{series_uid}.{k + 1}" for k in range(20)}
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3, 4]
    sr = hd.sr.Comprehensive3DSR.from_dataset(objects["SR"])
    assert sr.StudyInstanceUID == study_uid
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    volumes = _volumes(sr)
    assert set(volumes) == {"SAT", "VAT", "Muscle", "IMAT"}
    for name, value in volumes.items():
        assert value == pytest.approx(reference["totals"][f"{name}_volume_cm3"], rel=1e-6), name
    return seg, sr


def test_orthanc_routes_ct_to_the_node_and_gets_seg_and_sr_back(site):
    orthanc, node = site["orthanc"], site["node"]
    series = _copy(site["source"], site["root"] / "push", "2.25.7100", "2.25.7100.1", "ACC-PUSH")
    orthanc_id = orthanc.upload(series)
    t0 = time.time()
    answer = orthanc.post("/modalities/adiposeseg/store", {"Resources": [orthanc_id], "Synchronous": True})
    last_slice = time.time()
    assert answer["InstancesCount"] == 20 and answer["FailedInstancesCount"] == 0
    _results_in_orthanc(orthanc, "2.25.7100")
    back = time.time()
    print(f"\n20 slices: forwarded by Orthanc in {last_slice - t0:.2f} s; SEG + SR stored back in Orthanc "
          f"{back - last_slice:.2f} s after the last slice (quiet period 1 s)")
    _check_objects(orthanc, "2.25.7100", "2.25.7100.1", site["reference"])
    received = node.events("received")
    assert received and received[0]["calling_ae"] == "ORTHANC" and received[0]["series"]["2.25.7100.1"]["new"] == 20
    measured = node.events("measured", "2.25.7100.1")
    assert len(measured) == 1 and measured[0]["measured"]["volumes_cm3"]["SAT"] == pytest.approx(
        site["reference"]["totals"]["SAT_volume_cm3"], rel=1e-9)
    sent = node.wait_for("sent", "2.25.7100.1")
    assert sent[0]["to"] == [f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"]
    # the cohort table has batch's columns, one row per series
    table = (node.workdir / "results" / "summary.csv").read_text()
    assert table.splitlines()[0] == summary_csv_text([]).splitlines()[0]
    rows = {r["series_uid"]: r for r in csv.DictReader(io.StringIO(table))}
    assert float(rows["2.25.7100.1"]["SAT_volume_cm3"]) == pytest.approx(site["reference"]["totals"]["SAT_volume_cm3"], rel=1e-4)
    # no patient data in the audit log or the node's own log, only UIDs and AE titles
    for text in ((node.workdir / "audit.jsonl").read_text(), node.log.read_text()):
        assert not any(p in text for p in PHI)


def test_fetch_pulls_a_study_by_accession_number_from_orthanc(site, capsys):
    orthanc, node = site["orthanc"], site["node"]
    orthanc.upload(_copy(site["source"], site["root"] / "pull", "2.25.7200", "2.25.7200.1", "ACC-PULL"))
    pacs = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    assert main(["fetch", "--from", pacs, "--accession", "ACC-PULL", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "1 CT series found" in listed and "2.25.7200.1 (20 images)" in listed
    assert node.events("received") and not node.events("queued", "2.25.7200.1")   # a dry run moves nothing
    assert main(["fetch", "--from", pacs, "--accession", "ACC-PULL", "--move-to", "ADIPOSESEG"]) == 0
    assert "20 moved to ADIPOSESEG" in capsys.readouterr().out
    _results_in_orthanc(orthanc, "2.25.7200")
    _check_objects(orthanc, "2.25.7200", "2.25.7200.1", site["reference"])
    assert main(["fetch", "--from", pacs]) == 2   # never the whole PACS by accident
    assert "--study-date or --accession" in capsys.readouterr().err


def _files(series: Path) -> list[Path]:
    return sorted(p for p in series.iterdir() if p.is_file())


def _taking_from_the_test(orthanc, quiet_seconds: str) -> list[str]:
    """Flags of a node that takes CT from this test (TESTSCU) and sends the results to Orthanc."""
    return ["--allow", "TESTSCU", "--quiet-seconds", quiet_seconds, "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"]


def test_a_node_killed_mid_series_or_mid_measurement_processes_each_series_once(site, tmp_path):
    orthanc = site["orthanc"]
    back = _taking_from_the_test(orthanc, "1")
    port, workdir = free_port(), tmp_path / "node"
    series = _files(_copy(site["source"], tmp_path / "a", "2.25.7300", "2.25.7300.1", "ACC-KILL"))
    with node_process(workdir, port, *back) as node:
        assert store_files(series[:10], port) == [0] * 10
        node.kill()                                            # half the series in, nothing measured
    assert len(list((workdir / "incoming" / "2.25.7300.1").glob("*.dcm"))) == 10
    with node_process(workdir, port, *back) as node:
        # the PACS sends the study again, whole: the first ten are repeats, the rest new
        assert store_files(series, port) == [0] * 20
        node.wait_for("sent", "2.25.7300.1")
        measured = node.events("measured", "2.25.7300.1")
        assert len(measured) == 1 and measured[0]["measured"]["slices"] == [0, 20]
        assert node.events("received")[-1]["series"]["2.25.7300.1"] == {"study_uid": "2.25.7300", "new": 10, "repeated": 10}
        # once more, identical: nothing re-opens, nothing is measured or sent again
        assert store_files(series, port) == [0] * 20
        time.sleep(2.5)
        assert len(node.events("measured", "2.25.7300.1")) == 1 and len(node.events("sent", "2.25.7300.1")) == 1
    _check_objects(orthanc, "2.25.7300", "2.25.7300.1", site["reference"], ct_in_pacs=False)

    # killed while measuring: queued again on restart, measured and sent once
    series = _files(_copy(site["source"], tmp_path / "b", "2.25.7400", "2.25.7400.1", "ACC-KILL2"))
    with node_process(workdir, port, *back) as node:
        assert store_files(series, port) == [0] * 20
        node.wait_for("processing", "2.25.7400.1")
        node.kill()
        assert not node.events("measured", "2.25.7400.1")
    with node_process(workdir, port, *back) as node:
        assert node.wait_for("started", count=4)[-1]["resumed"] == ["2.25.7400.1"]
        node.wait_for("sent", "2.25.7400.1")
        assert len(node.events("measured", "2.25.7400.1")) == 1
    _check_objects(orthanc, "2.25.7400", "2.25.7400.1", site["reference"], ct_in_pacs=False)


def test_a_caller_not_on_the_allow_list_is_rejected_and_logged(site):
    node = site["node"]
    with pytest.raises(ConnectionRefusedError, match="rejected"):
        store_files(_files(site["source"])[:1], node.port, calling_ae="INTRUDER")
    rejected = node.wait_for("association_rejected")
    assert rejected[-1]["calling_ae"] == "INTRUDER" and "not allowed" in rejected[-1]["reason"]
    assert not (node.workdir / "incoming" / "2.25.7000.1").exists()


def test_fetch_says_when_the_pacs_does_not_know_its_ae_title(site, capsys):
    node = site["node"]   # a peer that rejects unknown calling AE titles
    assert main(["fetch", "--from", f"ADIPOSESEG@127.0.0.1:{node.port}", "--accession", "X", "--calling-ae", "NOBODY"]) == 2
    assert "association not accepted (rejected: is NOBODY known to it?)" in capsys.readouterr().err


def test_full_queue_and_low_disk_refuse_new_series_with_status_a700(site, tmp_path):
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"allow": "TESTSCU", "max-queue": 1, "send_to": "PACS@127.0.0.1:1"}))
    first = _files(_copy(site["source"], tmp_path / "x", "2.25.7500", "2.25.7500.1", "X"))
    second = _files(_copy(site["source"], tmp_path / "y", "2.25.7600", "2.25.7600.1", "Y"))
    port = free_port()
    with node_process(tmp_path / "full", port, "--config", str(config), "--quiet-seconds", "600") as node:
        assert store_files(first[:2], port) == [0, 0]
        assert store_files(second[:1] + first[2:3], port) == [0xA700, 0]   # a new series refused, the open one goes on
        refused = node.wait_for("store_refused")
        assert refused[0]["series_uid"] == "2.25.7600.1" and "max_queue" in refused[0]["reason"]
    with node_process(tmp_path / "disk", free_port(), "--config", str(config), "--min-free-mb", "1e12") as node:
        assert store_files(first[:1], node.port) == [0xA700]
        assert "free on the node's disk" in node.wait_for("store_refused")[0]["reason"]
        assert not list((tmp_path / "disk" / "incoming").rglob("*.dcm"))


def test_every_ct_transfer_syntax_is_read_and_measured_alike(site, tmp_path):
    """One series whose slices arrive in six transfer syntaxes (as after a PACS migration): the same
    volumes as the original JPEG 2000 series, the pixels being lossless in all."""
    node = site["node"]
    syntaxes = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless,
                ExplicitVRBigEndian, None]
    out = tmp_path / "mixed"
    out.mkdir()
    for index, path in enumerate(_files(_copy(site["source"], tmp_path / "src", "2.25.7700", "2.25.7700.1", "TS"))):
        ds = pydicom.dcmread(str(path))
        syntax = syntaxes[index % len(syntaxes)]
        if syntax == RLELossless:
            ds.decompress()
            ds.compress(RLELossless)
        elif syntax == ExplicitVRBigEndian:   # retired, still sent by old scanners; pydicom writes it only when forced
            ds.decompress()
            pixels = ds.pixel_array
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
            ds.file_meta.TransferSyntaxUID = syntax
            dcmwrite(str(out / path.name), ds, little_endian=False, implicit_vr=False, force_encoding=True)
            continue
        elif syntax is not None:   # None: left in JPEG 2000 lossless as the scanner wrote it
            ds.decompress()
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(str(out / path.name), enforce_file_format=True)
    files = _files(out)
    assert len({str(pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}) == 6
    assert store_files(files, node.port) == [0] * 20
    node.wait_for("sent", "2.25.7700.1")
    volumes = node.events("measured", "2.25.7700.1")[0]["measured"]["volumes_cm3"]
    for name, value in volumes.items():
        assert value == pytest.approx(site["reference"]["totals"][f"{name}_volume_cm3"], rel=1e-9), name


def test_a_failing_destination_is_retried_with_back_off_then_reported_and_the_ct_kept(site, tmp_path, capsys):
    port, closed = free_port(), free_port()
    series = _files(_copy(site["source"], tmp_path / "s", "2.25.7800", "2.25.7800.1", "F"))
    with node_process(tmp_path / "node", port, "--allow", "TESTSCU", "--quiet-seconds", "0.5", "--keep-received-hours", "0",
                      "--send-to", f"NOBODY@127.0.0.1:{closed}", "--retry-seconds", "0.5", "--send-attempts", "3") as node:
        assert store_files(series, port) == [0] * 20
        gave_up = node.wait_for("send_gave_up", "2.25.7800.1")
        failed = node.events("send_failed", "2.25.7800.1")
        assert [e["attempt"] for e in failed] == [1, 2] and [e["retry_in_s"] for e in failed] == [0.5, 1.0]
        assert gave_up[0]["attempt"] == 3 and "NOBODY@127.0.0.1" in gave_up[0]["message"]
        time.sleep(0.5)
    # measured (in the cohort table) but not sent: the received CT stays although its retention is 0
    assert len(list((tmp_path / "node" / "incoming" / "2.25.7800.1").glob("*.dcm"))) == 20
    assert "2.25.7800.1,done" in (tmp_path / "node" / "results" / "summary.csv").read_text()
    assert main(["node", "--status", "--workdir", str(tmp_path / "node")]) == 1
    assert "send_failed  2.25.7800.1  20 files" in capsys.readouterr().out
    # the destination fixed, the given-up send goes out
    with node_process(tmp_path / "node", port, "--allow", "TESTSCU", "--retry-sends", "--keep-received-hours", "0",
                      "--send-to", f"ORTHANC@127.0.0.1:{site['orthanc'].dicom_port}") as node:
        node.wait_for("removed_received", "2.25.7800.1")
        assert len(node.events("sent", "2.25.7800.1")) == 1 and len(node.events("measured", "2.25.7800.1")) == 1
    assert main(["node", "--status", "--workdir", str(tmp_path / "node")]) == 0
    assert not (tmp_path / "node" / "incoming" / "2.25.7800.1").exists()
    _check_objects(site["orthanc"], "2.25.7800", "2.25.7800.1", site["reference"], ct_in_pacs=False)


def test_sent_results_free_the_received_ct_after_the_retention(site):
    node = site["node"]
    node.wait_for("sent", "2.25.7100.1")
    assert not node.events("removed_received")   # kept 24 h by default
    assert len(list((node.workdir / "incoming" / "2.25.7100.1").glob("*.dcm"))) == 20


def test_tls_node_talks_only_tls(site, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    one = _files(_copy(site["source"], tmp_path / "s", "2.25.7900", "2.25.7900.1", "TLS"))[:1]
    port = free_port()
    with node_process(tmp_path / "tls", port, "--allow", "TESTSCU", "--quiet-seconds", "600", "--send-to", "PACS@127.0.0.1:1",
                      "--tls-cert", str(cert), "--tls-key", str(key)) as node:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        assert store_files(one, port, ssl_context=client) == [0]
        with pytest.raises(ConnectionRefusedError):
            store_files(one, port)   # plain DICOM is not answered
        assert node.events("started")[0]["tls"] is True


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"workdir": str(tmp_path), "allow": ["PACS", "CT1"], "send-to": "PACS@10.0.0.5:104",
                                  "port": 4000, "quiet_seconds": 30}))
    settings = build_config(read_config_file(str(config)), {"port": 5000, "quiet_seconds": None})
    assert (settings.port, settings.quiet_seconds, settings.allow, settings.host) == (5000, 30, ["PACS", "CT1"], "127.0.0.1")
    assert parse_peer(settings.send_to).port == 104
    config.write_text(json.dumps({"workdir": str(tmp_path), "allow": ["PACS"], "sendto": "x"}))
    with pytest.raises(AdiposeSegError, match="unknown setting.*sendto"):
        read_config_file(str(config))
    for flags, message in (({"allow": []}, "--allow"), ({"send_to": "PACS@host"}, "AE@HOST:PORT"),
                           ({"ae_title": "A" * 17}, "16 printable"), ({"send_to": "", "stow_url": ""}, "--send-to")):
        base = {"workdir": str(tmp_path), "allow": ["PACS"], "send_to": "PACS@h:104"}
        with pytest.raises(AdiposeSegError, match=message):
            build_config({}, dict(base, **flags))


def test_results_can_go_by_stow_rs_to_a_dicomweb_server(site, tmp_path):
    orthanc = site["orthanc"]
    port = free_port()
    series = _files(_copy(site["source"], tmp_path / "s", "2.25.8000", "2.25.8000.1", "STOW"))
    with node_process(tmp_path / "node", port, "--allow", "TESTSCU", "--quiet-seconds", "0.5",
                      "--stow-url", f"{orthanc.url}/dicom-web") as node:
        assert store_files(series, port) == [0] * 20
        assert node.wait_for("sent", "2.25.8000.1")[0]["to"] == [f"{orthanc.url}/dicom-web"]
    _check_objects(orthanc, "2.25.8000", "2.25.8000.1", site["reference"], ct_in_pacs=False)


def test_the_documented_orthanc_routing_rule_sends_stable_ct_series_to_the_node(site, tmp_path):
    """docs/hospital/orthanc-route-ct.lua in a second Orthanc: a CT series uploaded by a modality is
    routed to the node once stable, and the SEG + SR that come back are not routed again."""
    rule = Path(__file__).resolve().parents[1] / "docs" / "hospital" / "orthanc-route-ct.lua"
    port = free_port()
    with orthanc_server(tmp_path, {"adiposeseg": ["ADIPOSESEG", "127.0.0.1", port]}, LuaScripts=[str(rule)], StableAge=1) as orthanc:
        with node_process(tmp_path / "node", port, "--allow", "ORTHANC", "--quiet-seconds", "1",
                          "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}") as node:
            orthanc.upload(_copy(site["source"], tmp_path / "s", "2.25.8100", "2.25.8100.1", "LUA"))
            _results_in_orthanc(orthanc, "2.25.8100")
            _check_objects(orthanc, "2.25.8100", "2.25.8100.1", site["reference"])
            time.sleep(2.5)   # past StableAge: the SEG and SR series are stable too, and not sent to the node
            assert [list(e["series"]) for e in node.events("received")] == [["2.25.8100.1"]]


def test_the_documented_node_config_reads(tmp_path):
    example = Path(__file__).resolve().parents[1] / "docs" / "hospital" / "adiposeseg-node.json"
    config = build_config(read_config_file(str(example)), {"workdir": str(tmp_path)})
    assert (config.host, config.port, config.allow, config.destination.port) == ("0.0.0.0", 11112, ["ORTHANC", "PACS"], 4242)


def test_sigterm_while_measuring_stops_cleanly_and_the_series_is_measured_once(site, tmp_path):
    orthanc = site["orthanc"]
    back = _taking_from_the_test(orthanc, "0.5")
    port, workdir = free_port(), tmp_path / "node"
    series = _files(_copy(site["source"], tmp_path / "s", "2.25.8200", "2.25.8200.1", "TERM"))
    with node_process(workdir, port, *back) as node:
        assert store_files(series, port) == [0] * 20
        node.wait_for("processing", "2.25.8200.1")
        assert node.stop() == 0
        stopped = node.events("processing_stopped", "2.25.8200.1")   # cancelled at the next step, or just finished
        assert len(stopped) + len(node.events("measured", "2.25.8200.1")) == 1
    with node_process(workdir, port, *back) as node:
        node.wait_for("sent", "2.25.8200.1")
        assert len(node.events("measured", "2.25.8200.1")) == 1
    _check_objects(orthanc, "2.25.8200", "2.25.8200.1", site["reference"], ct_in_pacs=False)
