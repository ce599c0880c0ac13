"""Tasks: scenes with success checks, scripted experts, perturbations and domain randomization.

Importing `sim.tasks` registers every task; `make_task(name, **config)` builds one and unknown
names raise `UnknownTask` listing the available ones.
"""

from sim.tasks.base import (
    BadAction,
    Expert,
    Randomization,
    Spec,
    Task,
    TaskConfig,
    UnknownTask,
    available_tasks,
    make_task,
    register_task,
    task_class,
)
from sim.tasks.hand_grasp_lift import HandGraspLift, HandGraspLiftConfig
from sim.tasks.peg_insert import PegInsert, PegInsertConfig
from sim.tasks.push_t import PushT, PushTConfig
from sim.tasks.wipe import Wipe, WipeConfig

__all__ = [
    "BadAction", "Expert", "HandGraspLift", "HandGraspLiftConfig", "PegInsert", "PegInsertConfig", "PushT",
    "PushTConfig", "Randomization", "Spec", "Task", "TaskConfig", "UnknownTask", "Wipe", "WipeConfig",
    "available_tasks", "make_task", "register_task", "task_class",
]
