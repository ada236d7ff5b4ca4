# Declarations of the compiled header parser (implementation: headers.pyx; contract: headers.pyi;
# pure-Python twin: _pure/headers.py). Every attribute is read-only from Python.
cimport cython


@cython.final
cdef class HeliconeHeaders:
    cdef readonly str auth  # Helicone-Auth
    cdef readonly str request_id  # Helicone-Request-Id (the caller validates the UUID)
    cdef readonly str target_url  # Helicone-Target-Url
    cdef readonly str user_id  # Helicone-User-Id
    cdef readonly str session_id  # Helicone-Session-Id
    cdef readonly str session_path  # Helicone-Session-Path
    cdef readonly str session_name  # Helicone-Session-Name
    cdef readonly str omit_request  # Helicone-Omit-Request
    cdef readonly str omit_response  # Helicone-Omit-Response
    cdef readonly str cache_enabled  # Helicone-Cache-Enabled
    cdef readonly str cache_save  # Helicone-Cache-Save
    cdef readonly str cache_read  # Helicone-Cache-Read
    cdef readonly str cache_bucket_max_size  # Helicone-Cache-Bucket-Max-Size
    cdef readonly str cache_seed  # Helicone-Cache-Seed
    cdef readonly str cache_ignore_keys  # Helicone-Cache-Ignore-Keys
    cdef readonly str ratelimit_policy  # Helicone-RateLimit-Policy
    cdef readonly str retry_enabled  # Helicone-Retry-Enabled
    cdef readonly str retry_num  # Helicone-Retry-Num
    cdef readonly str retry_factor  # Helicone-Retry-Factor
    cdef readonly str retry_min_timeout  # Helicone-Retry-Min-Timeout
    cdef readonly str retry_max_timeout  # Helicone-Retry-Max-Timeout
    cdef readonly str fallbacks  # Helicone-Fallbacks
    cdef readonly dict properties  # Helicone-Property-<Name>: {name lower-cased: value}
    cdef readonly dict extra  # any other Helicone-* header: {full name lower-cased: value}


@cython.final
cdef class ParsedHeaders:
    cdef readonly HeliconeHeaders helicone  # the Helicone-* headers, decoded
    cdef readonly bytes authorization  # Authorization value, stripped; None when absent
    cdef readonly bytes api_key  # x-api-key value (Anthropic's scheme); None when absent
    cdef readonly bytes content_type  # Content-Type value; None when absent
    cdef readonly long long content_length  # Content-Length; -1 when absent
    cdef readonly bint chunked  # the last coding of Transfer-Encoding is "chunked"
    cdef readonly bint expect_continue  # Expect: 100-continue (case-insensitive)
    cdef readonly bytes host  # Host value; None when absent
    cdef readonly bytes forward  # b"name: value\r\n" lines to send upstream, names lower-cased


cdef ParsedHeaders _parse(list raw)
