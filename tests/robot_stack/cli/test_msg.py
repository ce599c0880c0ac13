import pytest

from robot_stack.cli.main import main

from .conftest import run_cli


def test_show_prints_full_definition_with_nested_types(capsys):
    assert main(["msg", "show", "sensor_msgs/msg/JointState"]) == 0
    out = capsys.readouterr().out
    for line in ("std_msgs/Header header", "string[] name", "float64[] position", "float64[] effort",
                 "MSG: std_msgs/Header", "builtin_interfaces/Time stamp", "uint32 nanosec"):
        assert line in out.splitlines()


def test_show_accepts_short_name_and_project_types(capsys):
    assert main(["msg", "show", "sensor_msgs/JointState"]) == 0
    assert "float64[] velocity" in capsys.readouterr().out
    assert main(["msg", "show", "robot_stack_msgs/NodeStats"]) == 0
    out = capsys.readouterr().out
    assert "robot_stack_msgs/TimerStats[] timers" in out
    assert "float64 jitter_p99" in out  # nested TimerStats definition


def test_show_typo_exits_2_naming_closest_type():
    result = run_cli("msg", "show", "sensor_msgs/JointStat")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown message type 'sensor_msgs/JointStat'")
    assert "sensor_msgs/msg/JointState" in result.stderr
    assert result.stdout == ""


def test_list_includes_ros_and_project_types(capsys):
    assert main(["msg", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert "sensor_msgs/msg/JointState" in names
    assert "robot_stack_msgs/msg/NodeStats" in names
    assert names == sorted(names)


@pytest.mark.parametrize("pkg", ["robot_stack_msgs", "robot_stack_msgs/msg"])
def test_list_filters_by_package(capsys, pkg):
    assert main(["msg", "list", pkg]) == 0
    names = capsys.readouterr().out.split()
    assert "robot_stack_msgs/msg/ActionChunk" in names
    assert all(n.startswith("robot_stack_msgs/msg/") for n in names)


def test_list_unknown_package_names_closest(capsys):
    assert main(["msg", "list", "sensr_msgs"]) == 2
    assert "sensor_msgs" in capsys.readouterr().err
