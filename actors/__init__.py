"""Actors: Actor, Context, ActorRef, supervision, policies and ActorSystem. Uses ``mailbox``."""

from ._actor import Actor, Context
from ._cell import ActorStatistics
from ._claims import BodyReader
from ._clock import Clock, ManualClock, SystemClock
from ._events import EventKind, SupervisionEvent
from ._policy import AskPolicy, Backoff, RestartType, Strategy
from ._pubsub import Subscribe, Workflow, WorkflowStep
from ._ref import ActorRef
from ._reminders import Reminder
from ._status import summarize
from ._status_events import AgentLifecycle, LifecycleChange, Progress, StatusFeed
from ._streaming import AskStream
from ._supervisor import Supervisor
from ._system import ActorSystem
from ._watch import Terminated

__all__ = (
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorSystem",
    "AgentLifecycle",
    "AskPolicy",
    "AskStream",
    "Backoff",
    "BodyReader",
    "Clock",
    "Context",
    "EventKind",
    "LifecycleChange",
    "ManualClock",
    "Progress",
    "Reminder",
    "RestartType",
    "StatusFeed",
    "Strategy",
    "Subscribe",
    "Supervisor",
    "SupervisionEvent",
    "SystemClock",
    "Terminated",
    "Workflow",
    "WorkflowStep",
    "summarize",
)
