# The nginx configuration users deploy with. `make install` renders the site conf with the installed
# paths into $(pkgdatadir)/nginx/magpie-site.conf; include it from nginx's http {} block.

nginxdir = $(pkgdatadir)/nginx
nginx_DATA = nginx/magpie-site.conf
EXTRA_DIST += nginx/magpie-site.conf.in nginx/dev-nginx.conf.in nginx/render
CLEANFILES += nginx/magpie-site.conf

# Defaults for a production install; edit the installed file for your host names and node addresses.
NGINX_RENDER_VARS = \
	LISTEN=80 \
	ACCESS_LOG=/var/log/nginx/magpie-access.log \
	ERROR_LOG=/var/log/nginx/magpie-error.log \
	SERVER_NAME=_ \
	FCGI_SOCKET=/run/magpie/http.sock \
	PUSH_SERVERS='server 127.0.0.1:9001 max_fails=0;' \
	WEB_ROOT=$(pkgdatadir)/web

nginx/magpie-site.conf: $(srcdir)/nginx/magpie-site.conf.in $(srcdir)/nginx/render
	$(AM_V_GEN)$(MKDIR_P) nginx && \
	$(NGINX_RENDER_VARS) $(SHELL) $(srcdir)/nginx/render $(srcdir)/nginx/magpie-site.conf.in > $@
