"""The "load image" fetch against a real web server on loopback (tests/image_server.py).

A test resolver maps images.test to 127.0.0.1 and a test address rule allows 127.0.0.1 only
where a test says so; the production rule (public_address) is what the refusals run on.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.image_server import MAX, ImageServer, image_server, picture, self_signed
from webapp.edge.image_fetch import ImageFetcher, ImageFetchError, IPAddress, public_address

NAMES = {
    "images.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
    "mixed.test": ["93.184.216.34", "10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
}


async def resolve(host: str, port: int) -> Sequence[str]:
    return NAMES[host]


def loopback_too(ip: IPAddress) -> bool:
    return ip == ipaddress.ip_address("127.0.0.1") or public_address(ip)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


def fetcher(**options: object) -> ImageFetcher:
    """Reaches the loopback server as images.test; everything else by the production rule."""
    return ImageFetcher(max_bytes=MAX, resolve=resolve, address_allowed=loopback_too, **options)  # type: ignore[arg-type]


async def refused(fetch: ImageFetcher, url: str) -> ImageFetchError:
    with pytest.raises(ImageFetchError) as caught:
        await fetch.fetch(url)
    await fetch.aclose()
    return caught.value


async def test_an_image_is_fetched_from_the_checked_address_under_its_own_name(
    server: ImageServer,
) -> None:
    fetch = fetcher()
    image = await fetch.fetch(server.url("/chart.png?q=1", host="images.test"))
    await fetch.aclose()
    assert (image.mime, image.data) == ("image/png", picture())
    [request] = server.requests
    # Connected to 127.0.0.1 itself, the name kept in the Host header; nothing of the viewer's.
    assert request["headers"]["Host"] == f"images.test:{server.port}"
    assert not {"Cookie", "Authorization", "Referer"} & set(request["headers"])


async def test_https_checks_the_certificate_against_the_name_not_the_address(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path, "images.test")
    trusted = ssl.create_default_context(cafile=str(cert))
    with image_server(tls=(cert, key)) as server:
        fetch = fetcher(verify=trusted)  # connects to 127.0.0.1, speaks TLS as images.test
        image = await fetch.fetch(server.url("/chart.png", host="images.test"))
        assert image.mime == "image/png"
        # The same address under a name the certificate does not cover is refused.
        error = await refused(fetch, server.url("/chart.png", host="other.test"))
        assert error.status == 502 and "ConnectError" in str(error)
        assert len(server.requests) == 1


async def test_the_type_is_what_pillow_decodes_not_what_the_server_says(
    server: ImageServer,
) -> None:
    fetch = fetcher()
    image = await fetch.fetch(server.url("/photo.jpg", host="images.test"))  # sent text/plain
    assert image.mime == "image/jpeg"
    for path in ("/page.png", "/drawing.svg"):  # HTML labelled image/png; SVG
        error = await refused(fetcher(), server.url(path, host="images.test"))
        assert error.status == 415 and "not a PNG, JPEG, GIF or WebP" in str(error)
    await fetch.aclose()


@pytest.mark.parametrize("path", ["/big.png", "/endless.png"])
async def test_the_byte_cap_holds_with_and_without_a_length(server: ImageServer, path: str) -> None:
    error = await refused(fetcher(), server.url(path, host="images.test"))
    assert error.status == 413


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"])
async def test_the_production_rule_refuses_this_machine_before_connecting(
    server: ImageServer, host: str
) -> None:
    error = await refused(ImageFetcher(), server.url("/chart.png", host=host))
    assert error.status == 403 and "not on the public internet" in str(error)
    assert server.requests == []


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert public_address(ipaddress.ip_address(address))


async def test_a_name_with_any_private_address_is_refused() -> None:
    error = await refused(fetcher(), "https://mixed.test/a.png")
    assert error.status == 403


async def test_every_redirect_is_checked_again(server: ImageServer) -> None:
    to_metadata = quote("http://metadata.test/latest/meta-data/", safe="")
    error = await refused(fetcher(), server.url(f"/redirect?to={to_metadata}", host="images.test"))
    assert error.status == 403
    to_internal = quote("http://10.1.2.3/x.png", safe="")
    error = await refused(fetcher(), server.url(f"/redirect?to={to_internal}", host="images.test"))
    assert error.status == 403
    assert [r["path"] for r in server.requests] == ["/redirect", "/redirect"]

    fetch = fetcher()  # a redirect to an allowed address is followed
    image = await fetch.fetch(server.url("/redirect?to=/chart.png", host="images.test"))
    await fetch.aclose()
    assert image.mime == "image/png"


async def test_a_redirect_loop_ends(server: ImageServer) -> None:
    loop = server.url(
        "/redirect?to=" + quote("/redirect?to=/redirect%3Fto%3D/x", safe=""), host="images.test"
    )
    error = await refused(fetcher(max_redirects=1), loop)
    assert error.status == 502 and "too many" in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@images.test/chart.png",
        "ftp://images.test/chart.png",
        "/logout",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "http:///x.png",
        "http://images.test:99999/x.png",
        "http://images.test/" + "a" * 3000,
    ],
)
async def test_addresses_that_are_not_plain_web_urls_are_refused(url: str) -> None:
    error = await refused(fetcher(), url)
    assert error.status == 400


async def test_a_server_that_never_answers_times_out(server: ImageServer) -> None:
    error = await refused(fetcher(timeout_s=0.5), server.url("/stall", host="images.test"))
    assert error.status == 504


async def test_an_error_answer_is_not_an_image(server: ImageServer) -> None:
    error = await refused(fetcher(), server.url("/missing.png", host="images.test"))
    assert error.status == 502 and "404" in str(error)
