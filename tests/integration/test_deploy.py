"""The production deployment files (issue 4): deploy/install.sh, the
systemd units, the nginx site and the logrotate config.

PID 1 on a build machine is usually not systemd, so the units are checked
offline: `systemd-analyze verify` must print nothing and `systemd-analyze
security --offline=yes` must rate each unit 2.5 or lower. install.sh runs
with --destdir into a temporary directory (it never touches the host then),
twice, to prove a re-run keeps the configuration and the secrets. The
installed nginx site and the test instance's own rendered config must pass
`nginx -t`, and the logrotate config `logrotate -d` without errors.
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import helpers

ROOT = helpers.REPO_ROOT
BUILD_DIR = os.path.join(ROOT, os.environ.get("PROFILE_BUILD_DIR", "build"))
INSTALL = os.path.join(ROOT, "deploy", "install.sh")
MAX_EXPOSURE = 2.5


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, **kw)


class InstallTest(helpers.StackTestCase):
    """deploy/install.sh --destdir: what it installs, and that a re-run is safe."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="profile-install-")
        cls.dest = os.path.join(cls.tmp, "root")
        cls.first = run([INSTALL, "--destdir", cls.dest, "--build-dir", BUILD_DIR])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, p):
        return os.path.join(self.dest, p.lstrip("/"))

    def test_install_succeeds_and_prints_the_systemctl_line(self):
        out = self.first.stdout.decode()
        self.assertEqual(self.first.returncode, 0, out)
        self.assertIn("systemctl enable --now profile.target", out)

    def test_programs_units_site_and_config_are_installed(self):
        for p in ("/usr/local/bin/profile-core", "/usr/local/bin/profile-web",
                  "/etc/systemd/system/profile-core.service", "/etc/systemd/system/profile-web.service",
                  "/etc/systemd/system/profile.target", "/etc/systemd/system/profile-core.socket",
                  "/etc/nginx/sites-available/profile.conf",
                  "/etc/nginx/snippets/profile-headers.conf", "/etc/logrotate.d/profile",
                  "/etc/profile/profile.ini", "/etc/profile/secrets.env",
                  "/usr/local/share/profile/web/templates/login.html",
                  "/usr/local/share/profile/nginx-errors/413.html"):
            self.assertTrue(os.path.exists(self.path(p)), "%s not installed" % p)
        self.assertTrue(os.access(self.path("/usr/local/bin/profile-core"), os.X_OK))
        self.assertTrue(os.path.isdir(self.path("/var/lib/profile/pictures")))
        self.assertTrue(os.path.isdir(self.path("/var/log/profile")))
        link = self.path("/etc/nginx/sites-enabled/profile.conf")
        self.assertEqual(os.readlink(link), "../sites-available/profile.conf")

    def test_secrets_are_generated_root_only(self):
        secrets = self.path("/etc/profile/secrets.env")
        self.assertEqual(stat.S_IMODE(os.stat(secrets).st_mode), 0o600)
        text = read(secrets)
        self.assertRegex(text, r"(?m)^JWT_SECRET=[0-9a-f]{64}$")
        self.assertRegex(text, r"(?m)^MYSQL_PASSWORD=\S{16,}$")

    def test_web_gets_its_own_csrf_key_and_none_of_the_core_secrets(self):
        webenv = self.path("/etc/profile/web.env")
        self.assertEqual(stat.S_IMODE(os.stat(webenv).st_mode), 0o600)
        text = read(webenv)
        self.assertRegex(text, r"(?m)^CSRF_SECRET=[0-9a-f]{64}$")
        self.assertNotIn("JWT_SECRET", text)
        self.assertNotIn("MYSQL_PASSWORD", text)

    def test_config_points_at_installed_paths_and_reads_secrets_from_the_environment(self):
        ini = read(self.path("/etc/profile/profile.ini"))
        self.assertRegex(ini, r"(?m)^env_file = ?$")
        self.assertRegex(ini, r"(?m)^dir = /var/lib/profile/pictures$")
        self.assertRegex(ini, r"(?m)^templates_dir = /usr/local/share/profile/web/templates$")
        self.assertRegex(ini, r"(?m)^trusted_proxies = 127\.0\.0\.2$")

    def test_installed_config_is_accepted_by_the_programs(self):
        # profile-web refuses unknown keys or bad values at start; -h would not parse the file,
        # so load it for real on a free port with the core unreachable and stop it at once.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILE_")}
        env.update(PROFILE_WEB_PORT="0", PROFILE_WEB_TEMPLATES_DIR=os.path.join(ROOT, "web/templates"))
        proc = subprocess.Popen([os.path.join(BUILD_DIR, "profile-web"), "-c",
                                 self.path("/etc/profile/profile.ini")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            lines = []
            for _ in range(5):  # a warning (e.g. no CSRF_SECRET in this environment) may come first
                lines.append(proc.stdout.readline().decode())
                if "listening" in lines[-1]:
                    break
            self.assertIn("listening", lines[-1], lines)
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    def test_rerun_keeps_config_and_secrets(self):
        secrets = self.path("/etc/profile/secrets.env")
        ini = self.path("/etc/profile/profile.ini")
        with open(ini, "a") as f:
            f.write("; local edit\n")
        before = (read(secrets), read(ini))
        again = run([INSTALL, "--destdir", self.dest, "--build-dir", BUILD_DIR])
        self.assertEqual(again.returncode, 0, again.stdout.decode())
        self.assertEqual((read(secrets), read(ini)), before)
        self.assertTrue(os.path.exists(ini + ".new"), "changed template not left beside the config")

    def test_installed_nginx_site_passes_nginx_t(self):
        site = read(self.path("/etc/nginx/sites-available/profile.conf"))
        site = site.replace("/etc/nginx/snippets/", self.path("/etc/nginx/snippets") + "/")
        site = site.replace("/var/log/nginx/", self.tmp + "/")
        with open(os.path.join(self.tmp, "site.conf"), "w") as f:
            f.write(site)
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write("pid %s/nginx.pid;\nevents {}\nhttp {\n include /etc/nginx/mime.types;\n"
                    " client_body_temp_path %s/body;\n proxy_temp_path %s/proxy;\n include %s/site.conf;\n}\n"
                    % (self.tmp, self.tmp, self.tmp, self.tmp))
        res = run(["nginx", "-t", "-c", conf, "-p", self.tmp, "-e", "stderr"])
        self.assertEqual(res.returncode, 0, res.stdout.decode())
        self.assertIn("test is successful", res.stdout.decode())


class SystemdUnitTest(helpers.StackTestCase):
    """The installed units, checked offline (no systemd as PID 1 needed)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="profile-units-")
        dest = os.path.join(cls.tmp, "root")
        res = run([INSTALL, "--destdir", dest, "--build-dir", BUILD_DIR])
        if res.returncode != 0:
            raise AssertionError(res.stdout.decode())
        cls.units = os.path.join(cls.tmp, "units")
        os.mkdir(cls.units)
        # verify checks that ExecStart exists: point it at the staged binaries.
        for name in ("profile-core.socket", "profile-core.service", "profile-web.service", "profile.target"):
            text = read(os.path.join(dest, "etc/systemd/system", name))
            text = text.replace("ExecStart=/usr/local/bin/", "ExecStart=%s/usr/local/bin/" % dest)
            with open(os.path.join(cls.units, name), "w") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_systemd_analyze_verify_is_clean(self):
        res = run(["systemd-analyze", "verify", "profile-core.socket", "profile-core.service",
                   "profile-web.service", "profile.target"], cwd=self.units)
        out = res.stdout.decode().strip()
        self.assertEqual(res.returncode, 0, out)
        self.assertEqual(out, "", "systemd-analyze verify complained")

    def exposure(self, unit):
        res = run(["systemd-analyze", "security", "--offline=yes", unit], cwd=self.units)
        out = res.stdout.decode()
        m = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(unit), out)
        self.assertIsNotNone(m, out)
        return float(m.group(1)), out

    def test_core_unit_exposure_is_at_most_2_5(self):
        score, out = self.exposure("profile-core.service")
        self.assertLessEqual(score, MAX_EXPOSURE, out)

    def test_web_unit_exposure_is_at_most_2_5(self):
        score, out = self.exposure("profile-web.service")
        self.assertLessEqual(score, MAX_EXPOSURE, out)

    def test_units_use_notify_watchdog_and_the_requested_limits(self):
        for name in ("profile-core.service", "profile-web.service"):
            text = read(os.path.join(self.units, name))
            for line in ("Type=notify", "Restart=always", "RestartSec=5", "LimitNOFILE=65536",
                         "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                         "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                         "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes",
                         "PrivateTmp=yes", "ProtectHome=yes"):
                self.assertRegex(text, r"(?m)^%s$" % re.escape(line), "%s lacks %s" % (name, line))
            self.assertRegex(text, r"(?m)^WatchdogSec=\d+")
            self.assertRegex(text, r"(?m)^EnvironmentFile=")

    def test_core_socket_matches_the_configured_port(self):
        text = read(os.path.join(self.units, "profile-core.socket"))
        self.assertRegex(text, r"(?m)^ListenStream=127\.0\.0\.1:9090$")
        self.assertRegex(read(os.path.join(self.units, "profile-core.service")), r"(?m)^Requires=profile-core\.socket$")


class NginxAndLogrotateConfigTest(helpers.StackTestCase):

    def test_test_instance_nginx_config_passes_nginx_t(self):
        res = run([os.path.join(ROOT, "scripts/stack.sh"), "--config", helpers.CONFIG_PATH, "nginx-test"],
                  cwd=ROOT)
        self.assertEqual(res.returncode, 0, res.stdout.decode())

    def test_logrotate_config_parses_without_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            res = run(["logrotate", "-d", "-s", os.path.join(tmp, "state"),
                       os.path.join(ROOT, "deploy/logrotate/profile")])
        out = res.stdout.decode()
        self.assertEqual(res.returncode, 0, out)
        self.assertNotRegex(out, r"(?im)^error", out)
        self.assertIn("rotating pattern: /var/log/profile/*.log", out)


if __name__ == "__main__":
    unittest.main()
