# magpie-http: the HTTP API (SPEC §3). Build rules for http/ and its unit tests.

HTTP_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(FCGI_CFLAGS) $(MHD_CFLAGS) $(QRENCODE_CFLAGS) $(CRYPTO_CFLAGS)
HTTP_LIBS = $(LIBMAGPIE) $(FCGI_LIBS) $(MHD_LIBS) $(QRENCODE_LIBS) $(CRYPTO_LIBS)

# Everything but main.c, so the unit tests link the same code the daemon runs.
noinst_LIBRARIES += http/libhttp.a
http_libhttp_a_SOURCES = \
	http/http.h http/call.h http/call.c http/router.c http/handlers.h http/hmetrics.h \
	http/sql.h http/sql.c http/users.h http/sms.c http/user.c http/conv.c http/groups.c http/qr.h http/qr.c \
	http/longpoll.h http/longpoll.c http/revoked.h http/revoked.c http/msg.c http/admin.c http/ops.c \
	http/fronts.h http/fcgi_front.c http/mhd_front.c
http_libhttp_a_CFLAGS = $(HTTP_CFLAGS)

bin_PROGRAMS += http/magpie-http
http_magpie_http_SOURCES = http/main.c
http_magpie_http_CFLAGS = $(HTTP_CFLAGS)
http_magpie_http_LDADD = http/libhttp.a $(HTTP_LIBS)

# Unit tests of the pure parts (route matching, cookies, UTF-8 cleaning, redaction, mobile numbers).
check_PROGRAMS += tests/unit/test_http_parts
tests_unit_test_http_parts_SOURCES = tests/unit/test_http_parts.c
tests_unit_test_http_parts_CPPFLAGS = $(AM_CPPFLAGS) -I$(srcdir)/http
tests_unit_test_http_parts_CFLAGS = $(HTTP_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_http_parts_LDADD = http/libhttp.a $(HTTP_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_http_parts

# The wrk benchmark of the HTTP API (bench/http/README.md).
EXTRA_DIST += bench/http/README.md bench/http/run.sh bench/http/imtoken.lua bench/http/hold_polls.py \
	bench/http/lp_race.py
