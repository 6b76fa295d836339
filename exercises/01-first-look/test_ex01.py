"""Grader of exercise 01: the student found pod ticket's IP and fetched its page."""


def test_ip_of_ticket(podlab, podlab_exercise):
    """you found the IP address of pod ticket"""
    given = podlab_exercise.answer("ip")
    real = podlab.ip_of("ticket")
    assert given == real, (f"{given} is not pod ticket's address; 'sudo podlab get pods -o wide' "
                           f"shows every pod's IP")


def test_ticket_page(podlab, podlab_exercise):
    """you fetched pod ticket's page by its IP address"""
    given = podlab_exercise.answer("ticket").lower()
    page = podlab.http("tmp-shell", "ticket", timeout=3)
    assert page.ok, page.message
    assert given == page.text.strip(), (f"{given!r} is not what ticket's page says; fetch it with "
                                        f"'sudo podlab exec tmp-shell -- curl -s <ticket's IP>'")
