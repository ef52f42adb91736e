"""gunicorn settings for Notebook, as ``make run`` and ``bench/proxy.py`` serve it.

    gunicorn -c examples/python-plugin/gunicorn.conf.py -b 127.0.0.1:$PORT

gthread keeps connections alive (werkzeug's development server closes every one, so the core
would connect anew for each view). One worker: the plugin enrols once, from that worker.
"""

import os

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "plugin:wsgi()"
workers = 1
threads = 8
control_socket_disable = True  # the core's gunicorn owns the default control socket
