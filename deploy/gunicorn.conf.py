"""gunicorn settings for clicktrail in production, behind nginx (deploy/nginx-clicktrail.conf).

Run: ``gunicorn --config deploy/gunicorn.conf.py`` (deploy/clicktrail.service does).
clicktrail's own settings come from the environment (CLICKTRAIL_*), not from here.
"""

import multiprocessing

wsgi_app = "clicktrail.tracker:create_app()"
# Loopback only: nginx is the one door, and sets the X-Forwarded-* headers clicktrail trusts.
bind = "127.0.0.1:8000"
# A click is a lookup and one journal write (plus an fsync with CLICKTRAIL_SYNC=yes): a few workers per core.
workers = multiprocessing.cpu_count() * 2 + 1
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 2
# Long enough for any tracked link (its original URL rides in the path): 8190, gunicorn's most.
limit_request_line = 8190
# Recycle workers now and then so a slow leak anywhere cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# nginx on this machine is the only proxy whose X-Forwarded-Proto gunicorn believes.
forwarded_allow_ips = "127.0.0.1,::1"
# To the journal (systemd captures stdout and stderr); nginx keeps the access log.
accesslog = None
errorlog = "-"
loglevel = "info"
# Managed by systemd (restart, reload with HUP): no control socket needed.
control_socket_disable = True
