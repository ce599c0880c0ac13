import platform

from robot_stack.cli import doctor

from .conftest import run_cli, table_row


def test_doctor_lists_transports_packages_and_environment():
    result = run_cli("doctor", "--transport", "inproc")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert table_row(out, "transport")  # at least one transport row
    for name in ("inproc (selected)", "dds", "rclpy"):
        assert f"│ {name} " in out
    for check in ("cyclonedds", "rosbags", "torch", "pybullet", "/dev/shm", "DDS discovery", "ROS_DOMAIN_ID"):
        assert f" {check} " in out
    assert platform.python_version() in out


def test_inproc_transport_is_available():
    checks = {c.name: c for c in doctor.check_transports("inproc")}
    assert checks["inproc (selected)"].ok


def test_missing_package_reports_the_import_error():
    check = doctor.check_package("robot_stack_no_such_package", "testing")
    assert not check.ok
    assert "No module named 'robot_stack_no_such_package'" in check.detail


def test_present_package_reports_its_version():
    check = doctor.check_package("numpy", "arrays")
    assert check.ok and check.detail[0].isdigit()


def test_shm_check(tmp_path):
    assert doctor.check_shm(str(tmp_path)).ok
    missing = doctor.check_shm(str(tmp_path / "absent"))
    assert not missing.ok and "missing" in missing.detail


def test_environment_shows_domain_id(monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    monkeypatch.setenv("ROBOT_STACK_DISCOVERY", "network")
    checks = {c.name: c.detail for c in doctor.check_environment()}
    assert checks["ROS_DOMAIN_ID"] == "42"
    assert "domain 42, discovery network" in checks["DDS discovery"]
    monkeypatch.setenv("ROBOT_STACK_DISCOVERY", "everywhere")
    checks = {c.name: c.detail for c in doctor.check_environment()}
    assert "ROBOT_STACK_DISCOVERY must be 'localhost' or 'network'" in checks["DDS discovery"]
