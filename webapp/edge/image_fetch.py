"""The server-side fetch behind a "load image" click: one web image, checked at every step.

Only http(s) URLs without credentials; every address the name resolves to must be public
(no loopback, private, link-local, multicast or reserved networks), and the connection goes
to the checked address itself (Host header and TLS name kept), so a second DNS answer cannot
swap it; each redirect is checked the same way. The body is capped, and it counts as an image
only once Pillow has decoded it as PNG, JPEG, GIF or WebP: that format, not the server's
Content-Type, is what the viewer is sent.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from webapp.core import attachments

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
MAX_BYTES = 5 * 1024 * 1024
MAX_URL_CHARS = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ImageFetchError(Exception):
    """The image was not fetched; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """A decoded image's bytes, as fetched, and the type Pillow found."""

    data: bytes
    mime: str


def public_address(ip: IPAddress) -> bool:
    """True for an address on the public internet (IPv4 inside IPv6 is checked as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address `host` resolves to (the system resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class ImageFetcher:
    """Fetches and checks one image at a time per call; at most `parallel` calls at once."""

    def __init__(
        self,
        *,
        max_bytes: int = MAX_BYTES,
        timeout_s: float = 15.0,
        max_redirects: int = 3,
        parallel: int = 8,
        resolve: Resolver = system_resolver,
        address_allowed: Callable[[IPAddress], bool] = public_address,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._resolve = resolve
        self._allowed = address_allowed
        self._slots = asyncio.Semaphore(parallel)
        # Never proxies from the environment, never cookies kept between fetches.
        no_cookies = httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
        # No kept-alive connections: the pool is keyed by address, and a connection verified
        # for one name must not carry a request for another name on the same address.
        self._http = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            cookies=no_cookies,
            verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, url: str) -> FetchedImage:
        """The image at `url`, or ImageFetchError saying why not."""
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout_s):
                    raw = await self._download(url)
            except TimeoutError:
                raise ImageFetchError(504, "The image took too long to arrive.") from None
            except httpx.HTTPError as exc:
                raise ImageFetchError(
                    502, f"The image could not be fetched ({type(exc).__name__})."
                ) from None
            return await asyncio.to_thread(decoded, raw)

    async def _download(self, url: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            target, host_header, sni = await self._checked(url)
            request = self._http.build_request(
                "GET",
                target,
                headers={
                    "Host": host_header,
                    "Accept": "image/*",
                    "User-Agent": "Parley image fetch",
                },
                extensions={"sni_hostname": sni} if sni else {},
            )
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location", "")
                    if not location:
                        raise ImageFetchError(502, "The image's server redirected nowhere.")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise ImageFetchError(
                        502, f"The image's server answered {response.status_code}."
                    )
                return await self._body(response)
            finally:
                await response.aclose()
        raise ImageFetchError(502, "The image's server redirected too many times.")

    async def _checked(self, url: str) -> tuple[str, str, str]:
        """(URL to the checked address, Host header, TLS name) for `url`, or refused."""
        if len(url) > MAX_URL_CHARS:
            raise ImageFetchError(400, "That image address is too long.")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ImageFetchError(400, "That is not a valid image address.") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ImageFetchError(400, "Only http and https images can be loaded.")
        if parts.username is not None or parts.password is not None:
            raise ImageFetchError(
                400, "Image addresses with a user name or password are not loaded."
            )
        addresses = await self._addresses(host, port)
        refused = [ip for ip in addresses if not self._allowed(ip)]
        if refused or not addresses:
            raise ImageFetchError(
                403, f"{host} is not on the public internet: Parley does not load images from it."
            )
        ip = addresses[0]
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rpartition("@")[2]
        sni = host if parts.scheme == "https" and not _is_ip(host) else ""
        return f"{parts.scheme}://{literal}:{port}{path}", host_header, sni

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        if _is_ip(host):
            return [ipaddress.ip_address(host)]
        try:
            found = await self._resolve(host, port)
        except OSError:
            raise ImageFetchError(502, f"{host} could not be found.") from None
        return [ipaddress.ip_address(address.split("%")[0]) for address in found]

    async def _body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_big(self.max_bytes)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise _too_big(self.max_bytes)
        return bytes(body)


def decoded(raw: bytes) -> FetchedImage:
    """`raw` as an image whose type Pillow decoded it as, or ImageFetchError (415)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                mime = attachments.IMAGE_TYPES.get(image.format or "")
                width, height = image.size
                if mime is None:
                    raise ImageFetchError(415, "That is not a PNG, JPEG, GIF or WebP image.")
                if (
                    width * height > attachments.MAX_PIXELS
                    or max(width, height) > attachments.MAX_SIDE
                ):
                    raise ImageFetchError(415, "That image has too many pixels to show.")
                with attachments.DECODING:
                    image.load()  # a truncated or corrupt file fails here
    except ImageFetchError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ):
        raise ImageFetchError(
            415, "That is not a PNG, JPEG, GIF or WebP image Parley can read."
        ) from None
    return FetchedImage(raw, mime)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _too_big(limit: int) -> ImageFetchError:
    return ImageFetchError(413, f"The image is larger than {limit // (1024 * 1024)} MB.")
