"""The cohort recipe for real: docs/slurm_job_array.sh through a single-node Slurm (Debian's slurm-wlm and munge).

Runs where those are installed and the tests run as root (CI installs them); elsewhere it is skipped.
The array's aggregate must equal a single-process batch over the same manifest.
"""
import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("slurmctld", "slurmd", "sbatch", "munged")


@pytest.fixture
def slurm(tmp_path):
    if not all(shutil.which(b) for b in NEEDED) or os.geteuid() != 0:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("CI installs slurm-wlm and munge (.ci/run); they are missing")
        pytest.skip("needs Slurm (slurm-wlm, munge) and root")
    host = socket.gethostname()
    folder = tmp_path / "slurm"
    (folder / "state").mkdir(parents=True)
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=adiposeseg-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode:
        subprocess.run(["munged", "--force"], check=True)
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"slurm did not come up: {(folder / 'slurmctld.log').read_text()[-2000:]}")
    yield env
    for name in ("slurmd", "slurmctld"):
        pid = folder / f"{name}.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()])


def _rows(path):
    with open(path) as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def test_job_array_script_runs_a_cohort_through_slurm(slurm, example_ct_sm, tiny_model_dir, tmp_path):
    paths = []
    for k in range(5):
        path = tmp_path / "cohort" / f"p{k}" / "ct.nii.gz"
        path.parent.mkdir(parents=True)
        sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, 3 * k:3 * k + 3], str(path))
        paths.append(path)
    manifest = tmp_path / "cohort.txt"
    manifest.write_text("\n".join(map(str, paths)) + "\n")
    command = str(Path(sys.executable).parent / "adiposeseg")
    extra = f"--model {tiny_model_dir} --device cpu"
    env = dict(slurm, MANIFEST=str(manifest), OUT=str(tmp_path / "array"), ADIPOSESEG=command, ADIPOSESEG_ARGS=extra)
    done = subprocess.run(["sbatch", "--wait", "--array=1-3", "--cpus-per-task=1", "--mem=0",
                           f"--output={tmp_path}/task-%a.log", str(ROOT / "docs" / "slurm_job_array.sh")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("task-*.log")))
    assert done.returncode == 0, done.stderr + logs
    assert sorted(p.name for p in tmp_path.glob("task-*.log")) == ["task-1.log", "task-2.log", "task-3.log"]
    agg = subprocess.run([command, "aggregate", str(tmp_path / "array"), "--manifest", str(manifest)],
                         capture_output=True, text=True)
    assert agg.returncode == 0, agg.stdout + agg.stderr
    single = subprocess.run([command, "batch", str(manifest), "-o", str(tmp_path / "single"), "-q", *extra.split()],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    a, b = _rows(tmp_path / "single" / "summary.csv"), _rows(tmp_path / "array" / "summary.csv")
    assert sorted(a) == sorted(b) == [f"p{k}_ct" for k in range(5)]
    for cid in a:
        for column in ("status", "input_sha256", "SAT_volume_cm3", "VAT_volume_cm3", "Muscle_volume_cm3"):
            assert a[cid][column] == b[cid][column], (cid, column)
