# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Order state machine, compiled twin of ``_fsm_py``.

Reads ``core_ext.transitions`` once at import and builds a dense boolean matrix
indexed by each status's position in ``ORDER_STATUSES``.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from core_ext.errors import IllegalTransition
from core_ext.transitions import ORDER_STATUSES, ROLLBACK_TARGETS, TERMINAL_STATUSES, TRANSITIONS

__all__ = ["can_transition", "is_terminal", "transition"]

cdef enum:
    MAX_STATUSES = 32

cdef dict _INDEX = {status: i for i, status in enumerate(ORDER_STATUSES)}
cdef bint _LEGAL[MAX_STATUSES][MAX_STATUSES]
cdef bint _ROLLBACK[MAX_STATUSES][MAX_STATUSES]
cdef bint _TERMINAL[MAX_STATUSES]


cdef void _build_tables() except *:
    cdef Py_ssize_t i, j
    if len(ORDER_STATUSES) > MAX_STATUSES:
        raise RuntimeError("too many order statuses for the compiled state machine")
    for i in range(MAX_STATUSES):
        _TERMINAL[i] = False
        for j in range(MAX_STATUSES):
            _LEGAL[i][j] = False
            _ROLLBACK[i][j] = False
    for current, targets in TRANSITIONS.items():
        i = _INDEX[current]
        _TERMINAL[i] = current in TERMINAL_STATUSES
        for target in targets:
            _LEGAL[i][<Py_ssize_t>_INDEX[target]] = True
    for current, targets in ROLLBACK_TARGETS.items():
        for target in targets:
            _ROLLBACK[<Py_ssize_t>_INDEX[current]][<Py_ssize_t>_INDEX[target]] = True


_build_tables()


cdef inline Py_ssize_t _index(object status):
    """Position of ``status`` in ORDER_STATUSES, or -1 if it is not a known status."""
    cdef PyObject* found
    if not isinstance(status, str):
        return -1
    found = PyDict_GetItem(_INDEX, status)
    if found == NULL:
        return -1
    return <Py_ssize_t><object>found


cdef inline bint _allowed(Py_ssize_t c, Py_ssize_t t, object previous):
    if _LEGAL[c][t]:
        return True
    return previous is not None and _ROLLBACK[c][t] and _index(previous) == t


def transition(current, target, previous=None):
    """Return ``target`` if an order in ``current`` may move to it, else raise.

    Parameters
    ----------
    current, target : str
        Order statuses (``core_ext.transitions.ORDER_STATUSES``).
    previous : str, optional
        The status before ``current``. Only used to return from PENDING_CANCEL to
        the state before it when the venue refuses the cancel: that move is legal
        when ``target == previous`` and ``previous`` is in ``ROLLBACK_TARGETS``.

    Raises
    ------
    IllegalTransition
        The table does not allow the move, or a status is unknown.
    """
    cdef Py_ssize_t c = _index(current)
    cdef Py_ssize_t t
    if c < 0:
        raise IllegalTransition(current, target, f"unknown order status {current!r}")
    t = _index(target)
    if t < 0:
        raise IllegalTransition(current, target, f"unknown order status {target!r}")
    if _allowed(c, t, previous):
        return target
    raise IllegalTransition(current, target)


def can_transition(current, target, previous=None):
    """Return whether :func:`transition` would succeed (never raises)."""
    cdef Py_ssize_t c = _index(current)
    cdef Py_ssize_t t = _index(target)
    if c < 0 or t < 0:
        return False
    return _allowed(c, t, previous)


def is_terminal(status):
    """Return whether an order in ``status`` can never change again.

    Raises
    ------
    ValueError
        ``status`` is not a known order status.
    """
    cdef Py_ssize_t s = _index(status)
    if s < 0:
        raise ValueError(f"unknown order status {status!r}")
    return _TERMINAL[s]
