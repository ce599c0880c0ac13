import threading
import time
from contextlib import contextmanager

import pytest

import robot_stack as rs
from robot_stack import convert, messages
from robot_stack.cli import topic as topic_cli
from robot_stack.cli.hz import RateMeter
from robot_stack.cli.main import main

from .conftest import require_transport, run_cli, stop, table_row, unique_topic

INPROC = ["--transport", "inproc"]


@contextmanager
def inproc_publisher(topic: str, rate: float | None = 100.0):
    """A thread publishing stamped JointStates on the in-process bus (rate None: never publishes)."""
    done = threading.Event()
    with rs.Context("inproc") as ctx:
        pub = ctx.transport.create_publisher(topic, "sensor_msgs/msg/JointState", rs.DEFAULT)

        def loop():
            n = 0
            while rate and not done.wait(1.0 / rate):
                n += 1
                pub.publish(convert.joint_state(["a", "b"], [1.5, float(n)], stamp=ctx.clock.now()))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


@contextmanager
def inproc_listener(topic: str, type_name: str):
    got: list = []
    with rs.Context("inproc") as ctx:
        ctx.transport.create_subscription(topic, type_name, rs.DEFAULT, got.append)
        yield got


# --- pub -------------------------------------------------------------------------------------
def test_pub_bad_field_exits_2_naming_the_field():
    result = run_cli("topic", "pub", "/x", "sensor_msgs/JointState", "{position: [1.0, oops]}", *INPROC)
    assert result.returncode == 2
    assert "field 'position[1]'" in result.stderr and result.stderr.startswith("error:")


def test_pub_unknown_field_and_type_and_bad_yaml(capsys):
    assert main(["topic", "pub", "/x", "std_msgs/String", "{dta: 1}", *INPROC]) == 2
    assert "did you mean 'data'" in capsys.readouterr().err
    assert main(["topic", "pub", "/x", "std_msgs/Strin", "{}", *INPROC]) == 2
    assert "std_msgs/msg/String" in capsys.readouterr().err
    assert main(["topic", "pub", "/x", "std_msgs/String", "{data: [", *INPROC]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["topic", "pub", "/x", "std_msgs/String", "- 1", *INPROC]) == 2
    assert "YAML mapping" in capsys.readouterr().err


def test_pub_once_is_received_and_header_stamp_filled():
    topic = unique_topic()
    with inproc_listener(topic, "sensor_msgs/msg/JointState") as got:
        before = time.time()
        assert main(["topic", "pub", topic, "sensor_msgs/JointState", "{name: [a], position: [2.5]}", *INPROC]) == 0
    assert len(got) == 1
    assert list(got[0].name) == ["a"] and got[0].position.tolist() == [2.5]
    assert abs(got[0].header.stamp.sec - before) < 5  # left out: stamped with the publish time


def test_pub_now_and_auto_keywords_and_explicit_stamp():
    now = {"sec": 7, "nanosec": 9}
    values = topic_cli.expand_keywords(
        "geometry_msgs/msg/PoseStamped", {"header": "auto"}, now)
    assert values["header"] == {"stamp": now, "frame_id": ""}
    msg = topic_cli.build_message("std_msgs/msg/Header", {"stamp": "now", "frame_id": "f"}, now)
    assert (msg.stamp.sec, msg.stamp.nanosec, msg.frame_id) == (7, 9, "f")
    zero = topic_cli.build_message("sensor_msgs/msg/JointState", {"header": {"stamp": {"sec": 0}}}, now)
    assert zero.header.stamp.sec == 0  # an explicit stamp is kept
    arr = topic_cli.build_message(
        "tf2_msgs/msg/TFMessage", {"transforms": [{"header": {"stamp": "now"}}]}, now)
    assert arr.transforms[0].header.stamp.nanosec == 9


def test_pub_rate_and_times():
    topic = unique_topic()
    with inproc_listener(topic, "std_msgs/msg/Int32") as got:
        t0 = time.monotonic()
        assert main(["topic", "pub", topic, "std_msgs/msg/Int32", "{data: 3}", "-r", "50", "-t", "5", *INPROC]) == 0
        elapsed = time.monotonic() - t0
    assert [m.data for m in got] == [3] * 5
    assert 0.05 < elapsed < 3


# --- echo ------------------------------------------------------------------------------------
def test_echo_once_prints_yaml(capsys):
    topic = unique_topic()
    with inproc_publisher(topic):
        assert main(["topic", "echo", topic, "--once", *INPROC]) == 0
    out = capsys.readouterr().out
    assert out.startswith("header:\n  stamp:\n    sec: ")
    assert "name:\n- a\n- b\nposition:\n- 1.5\n" in out
    assert out.rstrip().endswith("---")


def test_echo_field_csv_and_no_arr():
    data = messages.to_dict(convert.joint_state(["a", "b"], [1.0, 2.0]))
    assert topic_cli.format_message(data, "position", False, False, 128) == "- 1.0\n- 2.0\n---"
    assert topic_cli.format_message(data, "header.frame_id", False, False, 128) == "\n---"
    assert topic_cli.format_message(data, None, True, False, 128) == "0,0,,a,b,1.0,2.0"
    assert "position: <sequence, length 2>" in topic_cli.format_message(data, None, False, True, 128)
    assert topic_cli.format_message(data, "position", False, False, 1) == "- 1.0\n- '...'\n---"
    with pytest.raises(Exception, match="no field 'nope'"):
        topic_cli.format_message(data, "header.nope", False, False, 128)


def test_echo_unknown_topic_names_close_ones(capsys):
    topic = unique_topic()
    with inproc_publisher(topic, rate=None):
        assert main(["topic", "echo", topic + "x", "--once", *INPROC]) == 2
    err = capsys.readouterr().err
    assert f"topic not found on the graph: {topic}x" in err and f"did you mean {topic}" in err


# --- list ------------------------------------------------------------------------------------
def test_list_shows_topics_and_types(capsys):
    topic = unique_topic()
    with inproc_publisher(topic, rate=None):
        assert main(["topic", "list", *INPROC]) == 0
        assert topic in capsys.readouterr().out.split()
        assert main(["topic", "list", "-t", *INPROC]) == 0
        assert f"{topic} [sensor_msgs/msg/JointState]" in capsys.readouterr().out.splitlines()


# --- hz --------------------------------------------------------------------------------------
def test_rate_meter():
    meter = RateMeter(window=100)
    assert meter.report().rate_hz is None
    for i in range(50):
        meter.tick(i * 0.01 + (0.002 if i % 2 else 0.0), stamp=1000 + i * 0.02)
    r = meter.report()
    assert r.count == 50 and r.window == 50
    assert r.rate_hz == pytest.approx(100, rel=0.01)
    assert r.stamp_rate_hz == pytest.approx(50)
    assert r.min_period == pytest.approx(0.008) and r.max_period == pytest.approx(0.012)
    assert r.std_period == pytest.approx(0.002, rel=0.05)


def test_hz_inproc(capsys):
    topic = unique_topic()
    with inproc_publisher(topic, rate=100.0):
        assert main(["topic", "hz", topic, "--duration", "1.5", *INPROC]) == 0
    out = capsys.readouterr().out
    assert "summary over" in out
    cells = table_row(out, topic)
    rate, stamp_rate = float(cells[2]), float(cells[3])
    assert 50 < rate < 130 and 50 < stamp_rate < 130


def test_hz_silent_topic_exits_1(capsys):
    topic = unique_topic()
    with inproc_publisher(topic, rate=None):
        assert main(["topic", "hz", topic, "--duration", "0.3", *INPROC]) == 1
    assert f"no messages received on {topic}" in capsys.readouterr().err


def test_hz_unknown_topic_exits_2(capsys):
    assert main(["topic", "hz", unique_topic(), "--duration", "0.3", *INPROC]) == 2
    assert "topic not found" in capsys.readouterr().err


# --- across processes ------------------------------------------------------------------------
TRANSPORTS = [pytest.param("dds", marks=pytest.mark.slow), pytest.param("rclpy", marks=pytest.mark.slow)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hz_two_topics_across_processes(talker, transport):
    require_transport(transport)
    fast, slow = unique_topic("fast"), unique_topic("slow")
    talker(transport, fast, 100.0)
    talker(transport, slow, 40.0)
    result = run_cli("topic", "hz", fast, slow, "--duration", "3", "--transport", transport, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("summary over")[-1]
    fast_row, slow_row = table_row(summary, fast), table_row(summary, slow)
    assert 70 < float(fast_row[2]) < 130 and 70 < float(fast_row[3]) < 130  # receive and stamp rates
    assert 25 < float(slow_row[2]) < 55 and 25 < float(slow_row[3]) < 55


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_list_and_pub_across_processes(talker, transport):
    require_transport(transport)
    topic, listen = unique_topic(), unique_topic("listen")
    proc = talker(transport, topic, 50.0, listen)
    echo = run_cli("topic", "echo", topic, "--once", "--transport", transport)
    assert echo.returncode == 0, echo.stderr
    assert "name:\n- j1\n- j2\n- j3\nposition:\n- 0.5\n- -1.25\n" in echo.stdout

    listing = run_cli("topic", "list", "-t", "--wait", "4", "--transport", transport)
    assert f"{topic} [sensor_msgs/msg/JointState]" in listing.stdout.splitlines()

    pub = run_cli("topic", "pub", listen, "std_msgs/String", "{data: hello}", "--transport", transport)
    assert pub.returncode == 0, pub.stderr
    assert "(subscribers: 1)" in pub.stdout
    stop(proc)
    assert "heard hello" in proc.stdout.read()
