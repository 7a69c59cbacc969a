"""
WhiteNoise, async: only a request for a static file leaves the event loop.

WhiteNoise's middleware is sync, so Django would run every request through a thread for
it, event streams included. Telling a static file's path apart is a dictionary lookup;
only serving one (a file read) goes to a thread.
"""

from typing import Any

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        # WhiteNoise is untyped: what it returns is Any to mypy.
        if static_file is None:
            return await self.get_response(request)  # type: ignore[no-any-return]
        serve = sync_to_async(self.serve, thread_sensitive=False)
        return await serve(static_file, request)  # type: ignore[no-any-return]
