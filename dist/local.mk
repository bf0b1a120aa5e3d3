# systemd units for a deployment. Rendered with the configured paths and installed into
# $(pkgdatadir)/systemd; copy them to /etc/systemd/system (see README, "Deploy").

systemddir = $(pkgdatadir)/systemd
systemd_DATA = dist/systemd/magpie-http.service dist/systemd/magpie-push@.service \
	dist/systemd/magpie-persist.service dist/systemd/magpie-notify.service
EXTRA_DIST += dist/systemd/magpie-http.service.in dist/systemd/magpie-push@.service.in \
	dist/systemd/magpie-persist.service.in dist/systemd/magpie-notify.service.in
CLEANFILES += $(systemd_DATA)

dist/systemd/%.service: $(srcdir)/dist/systemd/%.service.in
	$(AM_V_GEN)$(MKDIR_P) dist/systemd && \
	sed -e 's|@bindir[@]|$(bindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' $< > $@
