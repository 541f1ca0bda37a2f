/*
 * pages: the HTML side of the web server (the browser flow of issue 2).
 *
 *   GET  /         login form (sets the pre-session CSRF cookie); 303 to
 *                  /profile when the session is valid
 *   POST /login    form username, password: 303 to /profile with the session
 *                  cookie; the form again with the error and 400/401 otherwise
 *   GET  /profile  username, nickname, picture; 303 to / without a session
 *   GET  /edit     nickname and picture form
 *   POST /edit     multipart nickname + optional picture: 303 to /profile, or
 *                  the form again with the error and 4xx
 *   POST /logout   session deleted at the core, cookie cleared, 303 to /
 *
 * Every form POST must carry the form's CSRF token (web/csrf.h): a missing
 * or wrong one, or an Origin header naming another site, is answered 403
 * and changes nothing (the login and edit forms are shown again with a
 * fresh token). A session that has ended sends the browser to
 * /?session=expired, where the login page says "please log in again".
 *
 * Pages are rendered from the templates in cfg.web.templates_dir (layout.html
 * wraps login.html, profile.html, edit.html and error.html), with every
 * user-supplied value HTML-escaped. A failed RPC answers 503 with an error
 * page. Handlers take the request whose body (if any) has been read and
 * return libmicrohttpd's verdict from queueing the response.
 */
#ifndef PROFILE_WEB_PAGES_H
#define PROFILE_WEB_PAGES_H

#include <microhttpd.h>

#include "web/request.h"

struct pages;

/*
 * Loads and parses the templates from dir. Returns the set (free with
 * pages_free) or NULL after printing the file and the problem to stderr.
 */
struct pages *pages_load(const char *dir);

/* Frees the templates. NULL is allowed. */
void pages_free(struct pages *p);

/* GET /: the login form, or 303 /profile when the session cookie is valid. */
enum MHD_Result pages_index(struct web_request *req);

/* POST /login (form username, password). */
enum MHD_Result pages_login(struct web_request *req);

/* GET /profile. */
enum MHD_Result pages_profile(struct web_request *req);

/* GET /edit. */
enum MHD_Result pages_edit_form(struct web_request *req);

/* POST /edit (multipart nickname, optional picture). */
enum MHD_Result pages_edit_submit(struct web_request *req);

/* POST /logout. */
enum MHD_Result pages_logout(struct web_request *req);

/*
 * Answers status with the error page showing message (a sentence; escaped
 * here). Used for 404, 405, 503 and other failures outside a form.
 */
enum MHD_Result pages_error(struct web_request *req, int status, const char *message);

#endif
