// Swaps the login link's single-use token for a session cookie, then opens the dashboard.
"use strict";
(async () => {
  const token = new URLSearchParams(location.search).get("token") || "";
  history.replaceState(null, "", "/login");  // the token leaves the address bar and history
  const title = document.getElementById("login-title");
  const message = document.getElementById("login-message");
  if (!token) {
    title.textContent = "No login token";
    message.textContent = "Run `podium dashboard` and open the link it prints.";
    return;
  }
  try {
    const reply = await fetch("/api/login", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({token}),
    });
    const body = await reply.json();
    if (!reply.ok) {
      title.textContent = "Cannot sign in";
      message.textContent = body.error || reply.statusText;
      return;
    }
    location.replace("/#services");
  } catch (err) {
    title.textContent = "Cannot sign in";
    message.textContent = String(err);
  }
})();
