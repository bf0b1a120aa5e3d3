# The browser client, served by nginx from $(pkgdatadir)/web (SPEC §1). Its third-party code (protobufjs,
# jsQR) comes from npm into web/node_modules (scripts/dev runs `npm ci` there); `make install` copies the
# two files the pages load when they are present, and says so when they are not.

nobase_dist_pkgdata_DATA = web/index.html web/phone.html web/chat.html web/room.html web/css/app.css \
	web/js/api.js web/js/backoff.js web/js/batch.js web/js/chat-client.js web/js/chat.js web/js/groups.js web/js/login.js \
	web/js/phone.js web/js/room-client.js web/js/room.js web/js/timeline.js web/room.proto web/package.json web/package-lock.json

WEB_VENDOR = node_modules/protobufjs/dist/protobuf.min.js node_modules/jsqr/dist/jsQR.js

install-data-local:
	@for f in $(WEB_VENDOR); do \
	  if test -f "$(srcdir)/web/$$f"; then \
	    $(MKDIR_P) "$(DESTDIR)$(pkgdatadir)/web/$$(dirname $$f)" && \
	    $(INSTALL_DATA) "$(srcdir)/web/$$f" "$(DESTDIR)$(pkgdatadir)/web/$$f"; \
	  else \
	    echo "note: web/$$f is missing (run 'npm ci' in web/ first); the room and phone pages need it"; \
	  fi; \
	done

uninstall-local:
	rm -f $(addprefix $(DESTDIR)$(pkgdatadir)/web/,$(WEB_VENDOR))

EXTRA_DIST += tests/web/package.json tests/web/package-lock.json tests/web/stack.mjs tests/web/unit.test.mjs \
	tests/web/e2e.test.mjs
