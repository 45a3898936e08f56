'use strict';
document.getElementById('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = document.getElementById('login-error');
  err.hidden = true;
  const body = JSON.stringify({
    name: document.getElementById('login-name').value.trim(),
    password: document.getElementById('login-password').value,
  });
  let resp;
  try {
    resp = await fetch('/console/login', {method: 'POST', headers: {'Content-Type': 'application/json'}, body, credentials: 'same-origin'});
  } catch (e) {
    err.textContent = 'Cannot reach the coordinator: ' + e.message;
    err.hidden = false;
    return;
  }
  if (resp.ok) {
    window.location.assign('/console/');
    return;
  }
  let msg = 'Login failed (' + resp.status + ')';
  try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
  err.textContent = msg;
  err.hidden = false;
  document.getElementById('login-password').focus();
});
