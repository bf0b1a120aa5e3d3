# The browser client, served by nginx from $(pkgdatadir)/web (SPEC §1).
nobase_dist_pkgdata_DATA = web/index.html
