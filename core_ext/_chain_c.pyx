# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The order-event hash chain's encoding, compiled twin of ``_chain_py``.

Same results as the Python twin for every input. The usual event (strings, integers,
booleans, None, and dicts and lists of them in its payload; an event time in
``datetime.timezone.utc``) is encoded here, into one buffer, and hashed with OpenSSL's
SHA-256; anything else (a Decimal, a float or a datetime in the payload, a time in
another zone, a year before 1000) is handed to the Python twin, so the two can never
disagree.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime,
    import_datetime,
)
from cpython.dict cimport PyDict_Keys
from cpython.list cimport PyList_Sort
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy

import datetime as _dt
import enum as _enum

from core_ext import _chain_py
from core_ext._chain_py import CHAIN_VERSION

__all__ = ["CHAIN_VERSION", "canonical_event", "event_hash"]

import_datetime()


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index)
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)


cdef extern from *:
    """
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    #include <openssl/sha.h>
    static int tessera_chain_sha256(const unsigned char *data, size_t n, unsigned char *out) {
        SHA256_CTX ctx;
        return SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, data, n) == 1 && SHA256_Final(out, &ctx) == 1;
    }
    """
    int tessera_chain_sha256(const unsigned char* data, size_t n, unsigned char* out)


cdef object _UTC = _dt.timezone.utc
cdef object _Enum = _enum.Enum
cdef bytes _VERSION = CHAIN_VERSION
cdef const char* _HEX = b"0123456789abcdef"

cdef enum:
    MAX_DEPTH = 16


cdef struct Out:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef int _grow(Out* out, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = out.length + extra
    cdef char* grown
    if need <= out.capacity:
        return 0
    while out.capacity < need:
        out.capacity *= 2
    grown = <char*>PyMem_Realloc(out.data, out.capacity)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    return 0


cdef inline int _raw(Out* out, const char* text, Py_ssize_t n) except -1:
    if out.length + n > out.capacity:
        _grow(out, n)
    memcpy(out.data + out.length, text, n)
    out.length += n
    return 0


cdef inline int _char(Out* out, char c) except -1:
    if out.length + 1 > out.capacity:
        _grow(out, 1)
    out.data[out.length] = c
    out.length += 1
    return 0


cdef int _u_escape(Out* out, unsigned int code) except -1:
    cdef char text[6]
    text[0] = c'\\'
    text[1] = c'u'
    text[2] = _HEX[(code >> 12) & 15]
    text[3] = _HEX[(code >> 8) & 15]
    text[4] = _HEX[(code >> 4) & 15]
    text[5] = _HEX[code & 15]
    return _raw(out, text, 6)


cdef int _string(Out* out, str value) except -1:
    """A JSON string as ``json.dumps(..., ensure_ascii=True)`` writes it."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(value)
    cdef int kind = PyUnicode_KIND(value)
    cdef void* data = PyUnicode_DATA(value)
    cdef unsigned int code
    cdef const char* ascii
    _char(out, c'"')
    if PyUnicode_IS_ASCII(value):
        ascii = <const char*>data
        for i in range(n):
            if ascii[i] < 0x20 or ascii[i] == 0x7F or ascii[i] == c'"' or ascii[i] == c'\\':
                break
        else:
            _raw(out, ascii, n)
            return _char(out, c'"')
    for i in range(n):
        code = <unsigned int>PyUnicode_READ(kind, data, i)
        if code == 0x22:
            _raw(out, b'\\"', 2)
        elif code == 0x5C:
            _raw(out, b"\\\\", 2)
        elif code == 0x0A:
            _raw(out, b"\\n", 2)
        elif code == 0x0D:
            _raw(out, b"\\r", 2)
        elif code == 0x09:
            _raw(out, b"\\t", 2)
        elif code == 0x08:
            _raw(out, b"\\b", 2)
        elif code == 0x0C:
            _raw(out, b"\\f", 2)
        elif code < 0x20 or code >= 0x7F:
            if code > 0xFFFF:
                code -= 0x10000
                _u_escape(out, 0xD800 | ((code >> 10) & 0x3FF))
                _u_escape(out, 0xDC00 | (code & 0x3FF))
            else:
                _u_escape(out, code)
        else:
            _char(out, <char>code)
    return _char(out, c'"')


cdef bint _value(Out* out, object value, int depth) except -1:
    """Append ``value`` as canonical JSON; False when it needs the Python twin."""
    cdef object text
    cdef list keys
    cdef Py_ssize_t i
    if depth > MAX_DEPTH:
        return False
    if value is None:
        _raw(out, b"null", 4)
    elif value is True:
        _raw(out, b"true", 4)
    elif value is False:
        _raw(out, b"false", 5)
    elif type(value) is str:
        _string(out, <str>value)
    elif type(value) is int:
        text = str(value)
        _raw(out, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    elif type(value) is dict:
        keys = PyDict_Keys(value)
        for key in keys:
            if type(key) is not str:
                return False
        PyList_Sort(keys)
        _char(out, c'{')
        for i in range(len(keys)):
            if i:
                _char(out, c',')
            _string(out, <str>keys[i])
            _char(out, c':')
            if not _value(out, (<dict>value)[keys[i]], depth + 1):
                return False
        _char(out, c'}')
    elif type(value) is list or type(value) is tuple:
        _char(out, c'[')
        for i in range(len(value)):
            if i:
                _char(out, c',')
            if not _value(out, value[i], depth + 1):
                return False
        _char(out, c']')
    else:
        return False
    return True


cdef inline void _digits(char* at, long value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        at[i] = <char>(48 + value % 10)
        value //= 10


cdef bint _time(Out* out, object value) except -1:
    """``"%Y-%m-%dT%H:%M:%S.%fZ"`` of a UTC datetime; False for anything else."""
    cdef char text[29]
    cdef int year
    if type(value) is not datetime or (<datetime>value).tzinfo is not _UTC:
        return False
    year = PyDateTime_GET_YEAR(value)
    if year < 1000:
        return False            # strftime does not pad the year there
    text[0] = c'"'
    _digits(text + 1, year, 4)
    text[5] = c'-'
    _digits(text + 6, PyDateTime_GET_MONTH(value), 2)
    text[8] = c'-'
    _digits(text + 9, PyDateTime_GET_DAY(value), 2)
    text[11] = c'T'
    _digits(text + 12, PyDateTime_DATE_GET_HOUR(value), 2)
    text[14] = c':'
    _digits(text + 15, PyDateTime_DATE_GET_MINUTE(value), 2)
    text[17] = c':'
    _digits(text + 18, PyDateTime_DATE_GET_SECOND(value), 2)
    text[20] = c'.'
    _digits(text + 21, PyDateTime_DATE_GET_MICROSECOND(value), 6)
    text[27] = c'Z'
    text[28] = c'"'
    _raw(out, text, 29)
    return True


cdef bint _status(Out* out, object value) except -1:
    if value is None:
        _raw(out, b"null", 4)
        return True
    if isinstance(value, _Enum):
        value = value.value
    if type(value) is not str:
        return False
    _string(out, <str>value)
    return True


cdef bint _encode(Out* out, object order_id, object sequence, object event_time, object from_status,
                  object to_status, object reason, object payload, object prev_hash) except -1:
    """The canonical JSON array (keys of the payload sorted); False: use the twin."""
    if type(order_id) is not str or type(sequence) is not int:
        return False
    if not reason:
        reason = ""
    if type(reason) is not str or (payload is not None and type(payload) is not dict):
        return False
    if prev_hash is not None and type(prev_hash) is not str:
        return False
    _char(out, c'[')
    _string(out, <str>order_id)
    _char(out, c',')
    _value(out, sequence, 0)
    _char(out, c',')
    if not _time(out, event_time):
        return False
    _char(out, c',')
    if not _status(out, from_status):
        return False
    _char(out, c',')
    if not _status(out, to_status):
        return False
    _char(out, c',')
    _string(out, <str>reason)
    _char(out, c',')
    if not _value(out, payload if payload is not None else {}, 0):
        return False
    _char(out, c',')
    _value(out, prev_hash, 0)
    _char(out, c']')
    return True


cdef object _encoded(object order_id, object sequence, object event_time, object from_status,
                     object to_status, object reason, object payload, object prev_hash, bint digest):
    """The canonical bytes (or their hex SHA-256 with ``digest``); None: use the twin."""
    cdef Out out
    cdef unsigned char raw[32]
    cdef char hexed[64]
    cdef int i
    out.capacity = 512
    out.length = 0
    out.data = <char*>PyMem_Malloc(out.capacity)
    if out.data == NULL:
        raise MemoryError()
    try:
        _raw(&out, _VERSION, len(_VERSION))
        if not _encode(&out, order_id, sequence, event_time, from_status, to_status, reason, payload, prev_hash):
            return None
        if not digest:
            return PyBytes_FromStringAndSize(out.data, out.length)
        if not tessera_chain_sha256(<const unsigned char*>out.data, <size_t>out.length, raw):
            raise RuntimeError("OpenSSL SHA-256 failed")
        for i in range(32):
            hexed[2 * i] = _HEX[raw[i] >> 4]
            hexed[2 * i + 1] = _HEX[raw[i] & 15]
        return PyUnicode_DecodeASCII(hexed, 64, NULL)
    finally:
        PyMem_Free(out.data)


def canonical_event(*, order_id, sequence, event_time, from_status, to_status, reason, payload, prev_hash):
    """The bytes an event's hash covers."""
    encoded = _encoded(order_id, sequence, event_time, from_status, to_status, reason, payload, prev_hash, False)
    if encoded is None:
        return _chain_py.canonical_event(order_id=order_id, sequence=sequence, event_time=event_time,
                                         from_status=from_status, to_status=to_status, reason=reason,
                                         payload=payload, prev_hash=prev_hash)
    return encoded


def event_hash(prev_hash, *, order_id, sequence, event_time, from_status, to_status, reason, payload):
    """The hex SHA-256 of an event (its columns as keywords) chained to ``prev_hash``."""
    hashed = _encoded(order_id, sequence, event_time, from_status, to_status, reason, payload, prev_hash, True)
    if hashed is None:
        return _chain_py.event_hash(prev_hash, order_id=order_id, sequence=sequence, event_time=event_time,
                                    from_status=from_status, to_status=to_status, reason=reason, payload=payload)
    return hashed
