"""The project's ASGI application with its static files, for the browser tests' server.

A deployment serves /static/ from a web server or CDN; the browser tests have none, so
Django's own static handler (which reads the files through the finders) fronts the app.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from chatsite.asgi import application as project_application

application = ASGIStaticFilesHandler(project_application)
