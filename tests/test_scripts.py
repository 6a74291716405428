"""The cluster recipes under scripts/: the SLURM script is valid bash, the launcher YAML parses."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_is_valid_bash_and_runs_a_sweep_on_the_cluster():
    script = SCRIPTS / "slurm_sweep.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "ray start --head" in text
    assert 'landscape-dist sweep "$CONFIG" --out "$OUT" --address "$ADDRESS"' in text


def test_cluster_launcher_yaml_parses():
    spec = yaml.safe_load((SCRIPTS / "ray_cluster.yaml").read_text())
    assert spec["head_node_type"] in spec["available_node_types"]
    assert any("landscape_dist" in cmd for cmd in spec["setup_commands"])
    assert all(cmd.startswith("ray ") for cmd in spec["worker_start_ray_commands"])
